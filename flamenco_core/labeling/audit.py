"""Privacy audit: what a pack would reveal about its owner's data if shared.

Definitions and design notes: ``docs/labeling.md``."""

from __future__ import annotations

import ipaddress
import random
import re
import secrets
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any, Collection, Iterable, Iterator, Optional

from .expr import Bin, Expression, Neg, Node, Num, SpecError, Stat, parse_expression, percentile_of, significant_digits
from .spec import LFPack

#: Numbers with more significant digits than this look measured, not chosen.
MAX_SIGNIFICANT_DIGITS = 4

_ID_EXACT = {
    "src", "dst", "source", "destination", "dest", "saddr", "daddr", "sa", "da", "from", "to",
    "flow_id", "flowid", "timestamp", "time_stamp", "ts", "measurement", "msm_id", "prb_id", "probe",
}
_ID_TOKENS = {
    "ip", "ips", "ipv4", "ipv6", "addr", "address", "addresses", "host", "hostname", "hostnames", "mac",
    "prefix", "asn", "id", "ids", "uuid", "timestamp", "ts", "datetime", "date", "url", "domain", "email",
    "ipaddr", "ipaddress", "macaddr", "hostaddr", "srcaddr", "dstaddr", "srcip", "dstip", "saddr", "daddr",
}
# absolute times (flow start/end) pin records to moments of the owner's capture
_TIME_GLUED = re.compile(r"(start|end|first|last|begin|stop)_?(time|ts|seen|timestamp)", re.I)
_ID_GLUED = re.compile(r"(src|dst|source|dest|destination|client|server|peer|remote|local|sender|receiver)_?(ip|addr|address|host|mac|name|net)", re.I)
_LABEL_NAMES = {"label", "labels", "ground_truth", "groundtruth", "target", "y", "y_true"}
_UNIVERSAL_TOKENS = {"port", "ports", "protocol", "proto", "flag", "flags", "ttl", "tos", "dscp", "ecn", "icmp"}

_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?:/\d{1,2})?(?![\d.])")
_IPV4_PREFIX = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){1,2}/\d{1,2}(?![\d.])")
_IPV4_WILDCARD = re.compile(r"(?<![\d.])(?:\d{1,3}\.){1,3}(?:\*|x)(?![\w])", re.I)
_IPV6 = re.compile(r"(?<![0-9A-Za-z:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:/\d{1,3})?(?![0-9A-Za-z:])")
_MAC = re.compile(r"(?<![0-9A-Fa-f:-])(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}(?![0-9A-Fa-f:-])")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_HOST = re.compile(r"(?<![\w.-])(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,63})(?![\w-])", re.I)
_NOT_TLD = {
    "csv", "parquet", "yaml", "yml", "json", "py", "txt", "md", "pcap", "pcapng", "gz", "zip", "html", "png",
    "jpg", "pdf", "log", "toml", "cfg", "ini", "xz", "bz", "tar", "nc", "npy", "npz", "pkl", "rst", "warts",
    "ipynb", "sh", "sql", "db", "svg", "tsv", "xml", "jsonl",
    # statistic names: "q3.iqr" in prose is not a host
    "mean", "std", "min", "max", "median", "iqr", "count",
}
_NUMBER_IN_TEXT = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w.])")


@dataclass(frozen=True)
class Finding:
    """One thing a pack reveals. ``lf`` is ``None`` for pack-level metadata."""

    lf: Optional[str]
    field: str
    kind: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tokens(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [t for t in re.split(r"[^0-9a-zA-Z]+", spaced.lower()) if t]


def is_identifier_feature(name: str) -> bool:
    """True for columns that identify hosts, flows or moments rather than describe behaviour."""
    low = name.lower()
    if low in _ID_EXACT or _ID_GLUED.search(low) or _TIME_GLUED.search(low):
        return True
    return any(t in _ID_TOKENS for t in _tokens(name))


def looks_universal(name: str) -> bool:
    """True for features whose literal values mean the same in everyone's data (ports, protocol...)."""
    return any(t in _UNIVERSAL_TOKENS for t in _tokens(name)) and not is_identifier_feature(name)


def find_addresses(text: str, allow_emails: bool = False) -> list[str]:
    """IP addresses/prefixes, MAC addresses, hostnames and e-mail addresses found in ``text``."""
    found: list[str] = []
    for m in _IPV4.finditer(text):
        core = m.group(0).split("/")[0]
        if all(int(o) <= 255 for o in core.split(".")):
            found.append(m.group(0))
    found += [m.group(0) for m in _IPV4_PREFIX.finditer(text)]
    found += [m.group(0) for m in _IPV4_WILDCARD.finditer(text)]
    for m in _IPV6.finditer(text):
        cand = m.group(0)
        try:
            if "/" in cand:
                ipaddress.IPv6Network(cand, strict=False)
            else:
                ipaddress.IPv6Address(cand)
            found.append(cand)
        except ValueError:
            pass
    found += [m.group(0) for m in _MAC.finditer(text)]
    emails = [m.group(0) for m in _EMAIL.finditer(text)]
    if not allow_emails:
        found += emails
    scrubbed = _EMAIL.sub(" ", text)
    for m in _HOST.finditer(scrubbed):
        if m.group(1).lower() not in _NOT_TLD and not m.group(0)[0].isdigit():
            found.append(m.group(0))
    return list(dict.fromkeys(found))


def _precise_numbers(text: str) -> list[str]:
    return [m.group(0) for m in _NUMBER_IN_TEXT.finditer(text) if significant_digits(m.group(0)) > MAX_SIGNIFICANT_DIGITS]


def _strings(obj: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(obj, str):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _strings(v, f"{path}[{i}]")


def _offsets(expr: Expression) -> list[Num]:
    """Constants added to/subtracted from something carrying data units (a statistic)."""
    bad: list[Num] = []

    def unit(node: Node) -> int:
        # dimension in "data units": a statistic is 1 (count: 0), a number 0
        if isinstance(node, Num):
            return 0
        if isinstance(node, Stat):
            return 0 if node.stat == "count" else 1
        if isinstance(node, Neg):
            return unit(node.operand)
        ul, ur = unit(node.left), unit(node.right)
        if node.op == "*":
            return ul + ur
        if node.op == "/":
            return ul - ur
        for const, other_unit in ((node.left, ur), (node.right, ul)):
            if other_unit != 0 and not any(isinstance(n, Stat) for n in _walk(const)):
                bad.extend(n for n in _walk(const) if isinstance(n, Num) and n.value != 0)
        return ul or ur

    unit(expr.root)
    return bad


def _walk(node: Node) -> Iterator[Node]:
    yield node
    if isinstance(node, Neg):
        yield from _walk(node.operand)
    elif isinstance(node, Bin):
        yield from _walk(node.left)
        yield from _walk(node.right)


# ---------------------------------------------------------------------------------------------- scaling

#: Random sets of synthetic statistics each threshold is evaluated on. Arithmetic is exact, so an
#: expression that is not equivariant agrees with one that is only on a measure-zero set of statistics;
#: the first set tests every property, the others that the shift gain does not depend on the data.
SCALE_CHECK_SETS = 3

# synthetic statistics are random integers below this: exact, and cheaper to multiply than Fractions
_DRAW = 1 << 40


class _Synthetic:
    """Consistent synthetic statistics of one feature, transformable as ``a*x + c``.

    Percentiles are strictly increasing random integers, the mean lies between min and max, ``std`` is
    positive and ``iqr = q3 - q1``, as on real data, so identities that hold for every data set
    (``q3 - q1 - iqr == 0``) also hold here.
    """

    __slots__ = ("loc", "std", "iqr", "count")

    def __init__(self, stats: Iterable[str], rng: random.Random) -> None:
        pct = {percentile_of(st) for st in stats if percentile_of(st) is not None} | {25.0, 75.0}
        qs = sorted(pct | {0.0, 100.0})
        draws = sorted(rng.sample(range(1, _DRAW), len(qs)))
        by_q = dict(zip(qs, draws))
        self.loc: dict[str, int] = {st: by_q[percentile_of(st)] for st in stats if percentile_of(st) is not None}
        self.loc["mean"] = rng.randrange(by_q[0.0], by_q[100.0])
        self.iqr = by_q[75.0] - by_q[25.0]
        self.std = rng.randrange(1, _DRAW)
        self.count = rng.randrange(2, 1 << 30)

    def get(self, stat: str, a: int, c: Fraction) -> Any:
        if stat == "count":
            return self.count
        if stat == "std":
            return a * self.std
        if stat == "iqr":
            return a * self.iqr
        return a * self.loc[stat] + c


def check_scaling(expr: Expression, feature: str, universal: Collection[str] = (), *,
                  rng: Optional[random.Random] = None, sets: int = SCALE_CHECK_SETS) -> Optional[str]:
    """Why ``expr``, a threshold on ``feature``, does not move with the data; ``None`` when it does.

    The property (module docstring): with ``feature``'s data mapped to ``a*x + c`` the threshold
    becomes ``a*T + g*c`` for one fixed ``g > 0``, and other non-universal features' data do not
    change it. Statistics of features in ``universal`` are fixed numbers. Checked by evaluating the
    expression with :meth:`Expression.evaluate_exact` on ``sets`` random synthetic statistics sets and
    their transforms; ``rng`` defaults to a freshly seeded generator (the sets cannot be known in
    advance, so an expression cannot be tuned to them).
    """
    rng = rng or random.Random(secrets.randbits(64))
    reads: dict[str, set[str]] = {}
    for f, stat in expr.statistics(feature):
        reads.setdefault(f, set()).add(stat)
    universal = set(universal)
    others = sorted(f for f in reads if f != feature and f not in universal)
    gain: Optional[Fraction] = None
    try:
        for k in range(max(1, sets)):
            synth = {f: _Synthetic(st, rng) for f, st in reads.items()}

            def value(moves: dict[str, tuple[int, Fraction]]) -> Fraction:
                def lookup(f: str, stat: str) -> Any:
                    a, c = moves.get(f, (1, 0))
                    return synth[f].get(stat, a, c)

                return Fraction(expr.evaluate_exact(lookup, feature))

            t0 = value({})
            if others and k == 0:  # first, so that the message names the other feature
                moved = {f: (rng.randrange(2, 1 << 20), Fraction(rng.randrange(1, _DRAW), rng.randrange(1, 1 << 20)))
                         for f in others}
                if value(moved) != t0:
                    return (f"depends on the units of {', '.join(map(repr, others))}: a threshold on {feature!r} may read "
                            "other features only through quantities that rescaling or shifting their data leaves unchanged "
                            "(e.g. std(other)/iqr(other))")
            if value({feature: (10, 0)}) != 10 * t0:
                return (f"does not scale with the data: multiplying {feature!r} by 10 does not multiply the threshold "
                        "by 10, so part of it is a fixed number in data units")
            shifts = [Fraction(rng.randrange(1, _DRAW), rng.randrange(1, 1 << 20)) * rng.choice((-1, 1))
                      for _ in range(2 if k == 0 else 1)]
            gains = {(value({feature: (1, c)}) - t0) / c for c in shifts}
            if gain is not None:
                gains.add(gain)
            if len(gains) > 1:
                return (f"does not shift with the data: shifting {feature!r} moves the threshold by an amount that "
                        "is not a fixed multiple of the shift")
            gain = gains.pop()
    except SpecError as exc:
        return f"cannot be evaluated on arbitrary data ({exc.message})"
    if gain is None or gain <= 0:
        return f"does not shift with the data: shifting {feature!r} " + (
            "leaves the threshold where it is" if gain == 0 else "moves the threshold the other way")
    return None


def audit_pack(pack: LFPack, allow: Iterable[str] = ()) -> list[Finding]:
    """Every finding for ``pack``, minus those allowlisted.

    ``allow`` holds LF names whose findings are accepted; the pack's own name allowlists pack-level
    findings (``lf is None``).
    """
    allowed = set(allow)
    universal = set(pack.universal_features)
    findings: list[Finding] = []
    rng = random.Random(secrets.randbits(64))
    # LFs repeat thresholds (p75, mean): judge each (text, feature) once per audit
    verdicts: dict[tuple[str, str], Optional[str]] = {}

    for i, feat in enumerate(pack.universal_features):
        if not looks_universal(feat):
            findings.append(Finding(None, f"universal_features[{i}]", "universal_declaration",
                                    f"{feat!r} is declared universal but does not look like a port, protocol, flag or TTL; "
                                    "literal thresholds on it would be raw values of your data"))

    data = pack.to_dict()
    for path, text in _strings({k: v for k, v in data.items() if k != "lfs"}, ""):
        findings += _text_findings(None, path, text, allow_emails=False)

    for li, lf in enumerate(pack.lfs):
        base = f"lfs[{li}]"
        reads_private = False
        for ci, cond in enumerate(lf.when):
            cpath = f"{base}.when[{ci}]"
            feats = {cond.feature}
            for v in cond.values:
                if isinstance(v, str):
                    feats |= {f for f, _ in parse_expression(v).statistics(cond.feature)}
            for f in sorted(feats):
                if f.lower() in _LABEL_NAMES:
                    findings.append(Finding(lf.name, f"{cpath}.feature", "label_feature",
                                            f"reads the ground-truth column {f!r}"))
                elif is_identifier_feature(f):
                    findings.append(Finding(lf.name, f"{cpath}.feature", "identifier_feature",
                                            f"reads identifier column {f!r} (addresses, ids and timestamps identify the owner's hosts/flows)"))
            is_universal = cond.feature in universal
            reads_private = reads_private or not is_universal
            literals = []
            for vi, v in enumerate(cond.values):
                vpath = f"{cpath}.value" + (f"[{vi}]" if isinstance(cond.value, list) else "")
                if isinstance(v, str):
                    expr = parse_expression(v)
                    if expr.is_constant:
                        literals.append((vpath, v))
                    for num in expr.numbers():
                        if significant_digits(num.text) > MAX_SIGNIFICANT_DIGITS:
                            findings.append(Finding(lf.name, vpath, "precise_constant",
                                                    f"{num.text!r} in {v!r} has {significant_digits(num.text)} significant digits; "
                                                    "a constant that precise can encode a value of the data"))
                    if not expr.is_constant:
                        why = None
                        if not is_universal:
                            key = (v, cond.feature)
                            if key not in verdicts:
                                verdicts[key] = check_scaling(expr, cond.feature, universal, rng=rng)
                            why = verdicts[key]
                        # on a non-universal feature an offset only counts when the threshold really fails
                        # to move with the data (``mean + 5 - 5`` is ``mean``); universal features keep the
                        # syntactic check they always had
                        offsets = _offsets(expr) if (why or is_universal) else []
                        for num in offsets:
                            findings.append(Finding(lf.name, vpath, "literal_offset",
                                                    f"{num.text!r} is added to a statistic in {v!r}: a constant in data units is a raw value; "
                                                    "scale statistics instead (e.g. mean + 2*std)"))
                        if why and not offsets:
                            findings.append(Finding(lf.name, vpath, "disguised_literal",
                                                    f"{v!r} on non-universal feature {cond.feature!r} {why}. "
                                                    "A threshold that does not follow the data acts as a fixed value, which can probe the "
                                                    f"data it runs on; build it from statistics of {cond.feature!r} only "
                                                    "(e.g. p75, mean + 2*std, median + 1.5*iqr, 0.5*p75)"))
                else:
                    literals.append((vpath, v))
            if literals and not is_universal:
                shown = ", ".join(str(v) for _, v in literals[:5]) + (" ..." if len(literals) > 5 else "")
                if cond.op == "in":
                    findings.append(Finding(lf.name, f"{cpath}.value", "literal_in_list",
                                            f"'in' list of literal values ({shown}) on non-universal feature {cond.feature!r}"))
                else:
                    for vpath, v in literals:
                        findings.append(Finding(lf.name, vpath, "literal_threshold",
                                                f"literal {v!r} on non-universal feature {cond.feature!r}: write it as a statistic "
                                                "(e.g. p75, mean + 2*std) or declare the feature universal if its values mean the same everywhere"))
        lf_data = lf.model_dump(mode="json", exclude_none=True)
        for key in ("name", "label", "group", "description", "author"):
            if key in lf_data:
                findings += _text_findings(lf.name, f"{base}.{key}", lf_data[key], allow_emails=(key == "author"),
                                           check_precise=(key != "name"))
        if reads_private:
            nums = [t for t in _tokens(lf.name) if t.isdigit() and significant_digits(t) >= 3]
            if nums:
                findings.append(Finding(lf.name, f"{base}.name", "number_in_name",
                                        f"LF name carries the number(s) {', '.join(nums)} while reading non-universal features"))

    return [f for f in findings if not _is_allowed(f, allowed, pack.name)]


def _is_allowed(f: Finding, allowed: set[str], pack_name: str) -> bool:
    return (f.lf in allowed) if f.lf is not None else (pack_name in allowed)


def _text_findings(lf: Optional[str], path: str, text: str, *, allow_emails: bool, check_precise: bool = True) -> list[Finding]:
    out = []
    addrs = find_addresses(text, allow_emails=allow_emails)
    for a in addrs:
        out.append(Finding(lf, path, "address_literal", f"{a!r} looks like an address, prefix or hostname"))
    if check_precise:
        scrub = text
        for a in addrs:
            scrub = scrub.replace(a, " ")
        for num in _precise_numbers(scrub):
            out.append(Finding(lf, path, "precise_constant", f"{num!r} has {significant_digits(num)} significant digits; it may be a value of the data"))
    return out


__all__ = ["Finding", "audit_pack", "check_scaling", "find_addresses", "is_identifier_feature", "looks_universal",
           "MAX_SIGNIFICANT_DIGITS", "SCALE_CHECK_SETS"]
