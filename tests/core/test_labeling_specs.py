"""LF specs and packs, the safe threshold evaluator, statistics, combine and the privacy audit."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import builders
from builders import EXAMPLE_PACK as EXAMPLE
from builders import lf
from flamenco_core.labeling import (
    ABSTAIN,
    LFPack,
    SpecError,
    apply_lfs,
    audit_pack,
    combine_packs,
    compute_stats,
    from_paper_votes,
    parse_expression,
    to_paper_votes,
)
from flamenco_core.labeling.expr import MAX_LENGTH, canonical_stat, significant_digits


def pack_dict(*lfs, **kw):
    return builders.pack_dict(*lfs, group="T", **kw)


# ---------------------------------------------------------------------------------------------- packs


def test_example_pack_loads_with_public_contract():
    pack = LFPack.from_yaml(EXAMPLE)
    assert pack.name == "cic-ntp-group-a"
    assert pack.version == 1 and pack.group == "A"
    assert pack.classes == ["benign", "attack"]
    assert pack.universal_features == ["src_port", "dst_port", "protocol"]
    assert [x.name for x in pack.lfs] == ["src_port_le_6600_attack", "bytes_le_half_p75_benign"]
    second = pack.lfs[1]
    assert second.label == "benign"
    assert [(c.feature, c.op, c.value) for c in second.when] == [("bytes", "<=", "0.5*p75"), ("packets", "<=", "mean")]
    assert pack.features() == {"src_port", "bytes", "packets"}
    assert pack.needed_stats() == {"bytes": {"q3"}, "packets": {"mean"}}
    assert len(pack.content_hash) == 64


def test_yaml_round_trip_and_hash_stability(tmp_path):
    pack = LFPack.from_yaml(EXAMPLE)
    out = tmp_path / "again.yaml"
    pack.to_yaml(out)
    assert LFPack.from_yaml(out) == pack
    assert LFPack.from_yaml(out).content_hash == pack.content_hash

    # key order, whitespace, JSON instead of YAML, 6600 vs 6600.0, spaces inside expressions: same content
    d = json.loads(pack.to_json())
    shuffled = {k: d[k] for k in reversed(list(d))}
    shuffled["lfs"] = [{k: x[k] for k in reversed(list(x))} for x in d["lfs"]]
    shuffled["lfs"][0]["when"][0]["value"] = 6600.0
    shuffled["lfs"][1]["when"][0]["value"] = " 0.5 *  p75 "
    (tmp_path / "p.json").write_text(json.dumps(shuffled, indent=7))
    again = LFPack.from_json(tmp_path / "p.json")
    assert again.content_hash == pack.content_hash
    assert [x.content_hash for x in again.lfs] == [x.content_hash for x in pack.lfs]

    # any change of content changes the hash
    changed = json.loads(pack.to_json())
    changed["lfs"][1]["when"][0]["value"] = "0.5*p90"
    assert LFPack.from_dict(changed).content_hash != pack.content_hash


def test_lf_content_hash_ignores_name_author_and_condition_order():
    a = LFPack.from_dict(pack_dict(
        lf("a", "attack", ("bytes", ">", "p90"), ("packets", ">=", "median"), author="x", description="d"),
        lf("b", "attack", ("packets", ">=", "p50"), ("bytes", ">", "p90"), author="y"),
        lf("c", "benign", ("bytes", ">", "p90"), ("packets", ">=", "median")),
        lf("d", "attack", ("protocol", "in", [17, 6]), ),
        lf("e", "attack", ("protocol", "in", [6, 17, 6])),
    ))
    h = [x.content_hash for x in a.lfs]
    assert h[0] == h[1]  # same behaviour: name/author/order/alias (p50 = median) do not matter
    assert h[0] != h[2]  # the label is content
    assert h[3] == h[4]  # 'in' is a set


@pytest.mark.parametrize(
    "data, needle",
    [
        (pack_dict(lf("x", "attack", ("bytes", "<=", "mean")), lf("x", "benign", ("bytes", ">", "mean"))), "unique"),
        (pack_dict(lf("x", "evil", ("bytes", "<=", "mean"))), "'evil'"),
        (pack_dict(lf("x", "attack", ("bytes", "between", ["q1"]))), "between"),
        (pack_dict(lf("x", "attack", ("bytes", "in", []))), "in"),
        (pack_dict(lf("x", "attack", ("bytes", "<=", ["q1", "q3"]))), "single value"),
        (pack_dict(lf("x", "attack", ("bytes", "~", 3))), "op"),
        (pack_dict(lf("x", "attack", ("bytes", "<=", True))), "value"),
        (pack_dict(lf("x", "attack", ("bytes", "<=", "mean ** 2"))), "'**'"),
        (pack_dict(lf("x", "attack")), "when"),
        ({**pack_dict(), "extra_key": 1}, "extra_key"),
        (pack_dict(classes=("a", "a")), "distinct"),
        (pack_dict(lf("x", "attack", ("bytes; rm -rf", "<=", "mean"))), "feature"),
    ],
)
def test_invalid_packs_are_spec_errors(data, needle):
    with pytest.raises(SpecError) as exc:
        LFPack.from_dict(data)
    assert needle in str(exc.value)


def test_bad_expression_in_pack_names_pack_lf_and_token():
    with pytest.raises(SpecError) as exc:
        LFPack.from_dict(pack_dict(lf("ok", "attack", ("bytes", "<=", "mean")), lf("sneaky", "attack", ("bytes", ">", "mean + foo"))))
    msg = str(exc.value)
    assert "pack 'p'" in msg and "LF 'sneaky'" in msg and "'foo'" in msg and "position 7" in msg


def test_yaml_loading_is_safe(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("pack: !!python/object/apply:os.system ['echo pwned']\nclasses: [a, b]\n")
    with pytest.raises(SpecError):
        LFPack.from_yaml(evil)


def test_cardinality_k_greater_than_two():
    pack = LFPack.from_dict(pack_dict(
        lf("low", "low", ("bytes", "<", "q1")), lf("mid", "mid", ("bytes", "between", ["q1", "q3"])), lf("high", "high", ("bytes", ">", "q3")),
        classes=("low", "mid", "high"),
    ))
    df = pd.DataFrame({"bytes": np.arange(100, dtype=float)})
    L = apply_lfs(pack, df)
    assert set(np.unique(L[:, 0])) == {ABSTAIN, 0}
    assert set(np.unique(L[:, 1])) == {ABSTAIN, 1}
    assert set(np.unique(L[:, 2])) == {ABSTAIN, 2}


def test_paper_mapping():
    L = np.array([[-1, 0, 1]], dtype=np.int8)
    P = to_paper_votes(L)
    assert P.tolist() == [[0, -1, 1]]
    assert from_paper_votes(P).tolist() == L.tolist()
    assert to_paper_votes(L, positive_index=0).tolist() == [[0, 1, -1]]
    with pytest.raises(ValueError):
        to_paper_votes(np.array([[2]]))


# ---------------------------------------------------------------------------------------------- evaluator


def _lookup(values):
    return lambda feature, stat: values[stat]


STATS = {"mean": 10.0, "std": 2.0, "min": 1.0, "max": 20.0, "median": 9.0, "q1": 5.0, "q3": 15.0, "iqr": 10.0, "count": 100.0, "p99.9": 19.9, "p5": 2.0}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("mean", 10.0), ("mean + 2*std", 14.0), ("0.5*p75", 7.5), ("q3 + 1.5*iqr", 30.0), ("-(min - 2)", 1.0),
        ("(max - min) / 2", 9.5), ("p99.9", 19.9), ("p05 * 2", 4.0), ("p50", 9.0), ("count/4", 25.0), ("1e3", 1000.0),
        ("+mean", 10.0), ("2 - -2", 4.0), (".5*mean", 5.0), ("mean(other)", 10.0),
    ],
)
def test_expressions_evaluate(text, expected):
    assert parse_expression(text).evaluate(_lookup(STATS | {"q3": 15.0}), "bytes") == pytest.approx(expected)


@pytest.mark.parametrize(
    "text, token",
    [
        ("__import__('os')", "__import__"),
        ("mean.__class__", ".__class__"),
        ("mean ** 99999", "**"),
        ("9e999", "9e999"),
        ("1e16", "1e16"),
        ("foo", "foo"),
        ("p101", "p101"),
        ("mean + ", "<end>"),
        ("mean(bytes", "<end>"),
        ("mean()", ")"),
        ("open('x')", "open"),
        ("lambda: 1", "lambda"),
        ("mean if 1 else 2", "if"),
        ("[1]", "["),
        ("'abc'", "'"),
        ("mean;1", ";"),
        ("2std", "2std"),
        ("Mean", "Mean"),
        ("mean mean", "mean"),
        ("1" * 40, "1" * 40),
        ("(" * 30 + "1" + ")" * 30, "("),
    ],
)
def test_evaluator_refusals_name_lf_and_token(text, token):
    with pytest.raises(SpecError) as exc:
        parse_expression(text, pack="pk", lf="bad_lf")
    err = exc.value
    assert err.lf == "bad_lf" and err.pack == "pk"
    assert err.token == token
    assert "LF 'bad_lf'" in str(err) and repr(token) in str(err)


def test_very_long_expression_refused():
    text = "mean + " * 100 + "1"
    assert len(text) > MAX_LENGTH
    with pytest.raises(SpecError) as exc:
        parse_expression(text, lf="long_lf")
    assert "longer than" in str(exc.value) and "LF 'long_lf'" in str(exc.value)


def test_division_by_zero_is_clear_error_at_apply():
    pack = LFPack.from_dict(pack_dict(lf("div0", "attack", ("bytes", "<=", "1/0")), lf("divstd", "attack", ("bytes", "<=", "mean/std"))))
    df = pd.DataFrame({"bytes": [1.0, 2.0, 3.0]})
    with pytest.raises(SpecError) as exc:
        apply_lfs(pack, df)
    assert "division by zero" in str(exc.value) and "LF 'div0'" in str(exc.value) and "'/'" in str(exc.value)
    const = pd.DataFrame({"bytes": [5.0, 5.0, 5.0]})
    pack2 = LFPack.from_dict(pack_dict(lf("divstd", "attack", ("bytes", "<=", "mean/std"))))
    with pytest.raises(SpecError) as exc:
        apply_lfs(pack2, const)
    assert "division by zero" in str(exc.value) and "LF 'divstd'" in str(exc.value)


def test_unknown_feature_and_missing_statistic_errors():
    pack = LFPack.from_dict(pack_dict(lf("a", "attack", ("bytes", "<=", "mean")), lf("b", "attack", ("bytez", "<=", "p90"))))
    df = pd.DataFrame({"bytes": [1.0, 2.0, 3.0]})
    with pytest.raises(SpecError) as exc:
        apply_lfs(pack, df)
    assert "LF 'b'" in str(exc.value) and "'bytez'" in str(exc.value) and "did you mean bytes" in str(exc.value)

    other = LFPack.from_dict(pack_dict(lf("c", "attack", ("bytes", "<=", "mean(nope)"))))
    with pytest.raises(SpecError) as exc:
        apply_lfs(other, df)
    assert "LF 'c'" in str(exc.value) and "'nope'" in str(exc.value)

    p90 = LFPack.from_dict(pack_dict(lf("needs_p90", "attack", ("bytes", "<=", "p90"))))
    profile = compute_stats(df, ["bytes"])  # describe() statistics only
    with pytest.raises(SpecError) as exc:
        apply_lfs(p90, df, stats=profile)
    msg = str(exc.value)
    assert "LF 'needs_p90'" in msg and "'p90'" in msg and "'bytes'" in msg and "profile" in msg


def test_non_numeric_feature_is_spec_error():
    pack = LFPack.from_dict(pack_dict(lf("a", "attack", ("proto_name", "==", "mean"))))
    with pytest.raises(SpecError) as exc:
        apply_lfs(pack, pd.DataFrame({"proto_name": ["tcp", "udp"]}))
    assert "LF 'a'" in str(exc.value) and "proto_name" in str(exc.value)


def test_canonical_stats_and_significant_digits():
    assert canonical_stat("p25") == "q1" and canonical_stat("p50") == "median" and canonical_stat("p75") == "q3"
    assert canonical_stat("p0") == "min" and canonical_stat("p100") == "max"
    assert canonical_stat("p05") == "p5" and canonical_stat("p99.90") == "p99.9"
    assert canonical_stat("p101") is None and canonical_stat("foo") is None
    assert significant_digits("37.2817") == 6
    assert significant_digits("1500") == 2
    assert significant_digits("0.05") == 1
    assert significant_digits("2.576") == 4


# ---------------------------------------------------------------------------------------------- hypothesis

_STAT_NAMES = ["mean", "std", "min", "max", "median", "q1", "q3", "iqr", "count", "p10", "p90", "p99.9", "p2.5", "p50", "p0", "p100"]
EPS = 1e-12


_QUANTILES = {"min": 0.0, "max": 1.0, "median": 0.5, "q1": 0.25, "q3": 0.75, "p10": 0.1, "p90": 0.9, "p99.9": 0.999,
              "p2.5": 0.025, "p50": 0.5, "p0": 0.0, "p100": 1.0}


def _pandas_stats(s: pd.Series) -> dict[str, float]:
    """The reference: pandas' own mean/std/count/quantile (describe() semantics), finite values only."""
    s = s[np.isfinite(s)]
    qs = s.quantile(sorted(set(_QUANTILES.values())))
    out = {name: float(qs.loc[q]) for name, q in _QUANTILES.items()}
    out.update(mean=float(s.mean()), std=float(s.std()), count=float(s.count()), iqr=float(qs.loc[0.75] - qs.loc[0.25]))
    return out


@st.composite
def expr_trees(draw, depth=0):
    """(text, reference(stats) -> (value, error bound)) with the reference in plain Python arithmetic."""
    kind = draw(st.sampled_from(["num", "stat", "stat", "neg", "bin", "bin"] if depth < 4 else ["num", "stat"]))
    if kind == "num":
        v = draw(st.one_of(st.integers(-50, 50).map(float), st.sampled_from([0.5, 1.5, 2.25, 0.1, 3.0])))
        text = repr(v) if draw(st.booleans()) else (str(int(v)) if v.is_integer() else repr(v))
        return text if v >= 0 else f"({text})", (lambda S, v=v: (v, 0.0))
    if kind == "stat":
        name = draw(st.sampled_from(_STAT_NAMES))
        return name, (lambda S, n=name: (S[n], EPS * abs(S[n])))
    if kind == "neg":
        t, f = draw(expr_trees(depth=depth + 1))
        return f"-({t})", (lambda S, f=f: (lambda r: (-r[0], r[1]))(f(S)))
    op = draw(st.sampled_from("+-*/"))
    lt, lf_ = draw(expr_trees(depth=depth + 1))
    rt, rf = draw(expr_trees(depth=depth + 1))
    sp = draw(st.sampled_from(["", " "]))

    def ref(S, op=op, lf_=lf_, rf=rf):
        (a, ea), (b, eb) = lf_(S), rf(S)
        if op == "+":
            r, e = a + b, ea + eb
        elif op == "-":
            r, e = a - b, ea + eb
        elif op == "*":
            r, e = a * b, abs(a) * eb + abs(b) * ea + ea * eb
        else:
            if abs(b) <= eb:  # the divisor is zero within rounding: the outcome may legitimately differ
                raise ZeroDivisionError
            r = a / b
            e = (ea + abs(r) * eb) / (abs(b) - eb)
        return r, e + EPS * abs(r)

    return f"({lt}){sp}{op}{sp}({rt})", ref


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tree=expr_trees(),
    values=st.lists(st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.just(math.nan), st.integers(-1000, 1000).map(float)), min_size=2, max_size=60),
)
def test_random_expressions_match_reference_on_pandas_stats(tree, values):
    text, ref = tree
    s = pd.Series(values, dtype="float64")
    assume(np.isfinite(s).sum() >= 2)
    S = _pandas_stats(s)
    try:
        expected, bound = ref(S)
    except ZeroDivisionError:
        expected = None
    pack = LFPack.from_dict(pack_dict(lf("h", "attack", ("x", "<=", text))))
    from flamenco_core.labeling import resolved_thresholds
    from flamenco_core.labeling.stats import DataStatistics

    stats = DataStatistics(pd.DataFrame({"x": s}))
    try:
        got = resolved_thresholds(pack, stats)["h"][f"x <= {text}"]
    except SpecError as exc:
        assert expected is None or not math.isfinite(expected) or "division by zero" in str(exc) or "overflow" in str(exc), (text, exc)
        return
    if expected is None:
        return  # divisor ~0 by rounding: either outcome is acceptable
    assume(math.isfinite(expected) and math.isfinite(bound))
    assert abs(got - expected) <= bound + 1e-9 * max(1.0, abs(expected)), (text, got, expected, bound)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=80), st.text(alphabet="meanstdp0123456789.+-*/() _e[]'\"x", max_size=60)))
def test_garbage_never_crashes_with_anything_but_spec_error(text):
    try:
        expr = parse_expression(text, lf="g")
    except SpecError as exc:
        assert exc.lf == "g"
        return
    try:
        value = expr.evaluate(lambda f, s: 3.0, "x")
    except SpecError:
        return
    assert isinstance(value, float)


# ---------------------------------------------------------------------------------------------- statistics


def test_stats_match_pandas_describe():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"a": rng.lognormal(3, 2, 1001), "b": rng.integers(0, 100, 1001).astype(float), "c": rng.normal(size=1001)})
    df.loc[::7, "a"] = np.nan
    desc = df.describe(percentiles=[0.05, 0.25, 0.5, 0.75, 0.999])
    got = compute_stats(df, ["a", "b", "c"], ["count", "mean", "std", "min", "q1", "median", "q3", "max", "iqr", "p5", "p99.9"])
    for col in "abc":
        for stat, row in [("count", "count"), ("mean", "mean"), ("std", "std"), ("min", "min"), ("q1", "25%"),
                          ("median", "50%"), ("q3", "75%"), ("max", "max"), ("p5", "5%"), ("p99.9", "99.9%")]:
            assert got[col][stat] == pytest.approx(desc.loc[row, col], rel=1e-12, abs=1e-12), (col, stat)
        assert got[col]["iqr"] == pytest.approx(desc.loc["75%", col] - desc.loc["25%", col], rel=1e-12)


def test_stats_ignore_infinities_like_profile():
    from flamenco_core.preprocess.profile import profile

    df = pd.DataFrame({"a": [1.0, 2.0, np.inf, 4.0, -np.inf, np.nan, 10.0]})
    prof = profile(df)
    got = compute_stats(df, ["a"])
    for stat in ["count", "mean", "std", "min", "q1", "median", "q3", "max"]:
        assert got["a"][stat] == pytest.approx(prof.loc["a", stat])


def test_profile_forms_give_same_thresholds():
    from flamenco_core.labeling import resolved_thresholds
    from flamenco_core.preprocess.profile import profile

    rng = np.random.default_rng(2)
    df = pd.DataFrame({"bytes": rng.lognormal(5, 2, 500), "packets": rng.integers(1, 50, 500).astype(float)})
    pack = LFPack.from_yaml(EXAMPLE)
    from_data = resolved_thresholds(pack, compute_stats(df, pack.features() - {"src_port"}, pack.needed_stats()))
    prof = profile(df)  # q1/median/q3 columns
    describe_style = df.describe().T  # 25%/50%/75% columns
    raw_describe = df.describe()  # stats as rows
    for form in (prof, describe_style, raw_describe, prof.reset_index(), prof.to_dict(orient="index")):
        got = resolved_thresholds(pack, form)
        for lf_name, conds in from_data.items():
            for key, value in conds.items():
                assert got[lf_name][key] == pytest.approx(value, rel=1e-12)


# ---------------------------------------------------------------------------------------------- combine


def test_combine_reports_duplicates_and_name_clashes():
    a = LFPack.from_dict({**pack_dict(
        lf("big_bytes", "attack", ("bytes", ">", "p90")),
        lf("few_packets", "benign", ("packets", "<=", "q1")),
        name="pack-a"), "group": "A"})
    b = LFPack.from_dict({**pack_dict(
        lf("large_transfers", "attack", ("bytes", ">", " p90 ")),      # duplicate of big_bytes by content
        lf("few_packets", "benign", ("packets", "<=", "median")),     # clash: same name, different content
        lf("ntp", "attack", ("src_port", "==", 123)),
        name="pack-b", universal=("src_port", "ttl")), "group": "B"})
    merged, report = combine_packs([a, b], name="ab")
    assert merged.name == "ab" and merged.group == "A+B"
    assert [x.name for x in merged.lfs] == ["big_bytes", "few_packets", "few_packets__B", "ntp"]
    assert [(d[0], d[2]) for d in report.duplicates] == [("big_bytes", "large_transfers")]
    assert report.renamed == [("pack-b", "few_packets", "few_packets__B")]
    assert merged.lf("ntp").group == "B" and merged.lf("big_bytes").group == "A"
    assert merged.universal_features == ["src_port", "dst_port", "protocol", "ttl"]
    assert report.to_dict()["duplicates"][0]["content_hash"] == a.lfs[0].content_hash

    c = LFPack.from_dict(pack_dict(lf("x", "good", ("rtt", ">", "p99")), classes=("good", "noise")))
    with pytest.raises(SpecError):
        combine_packs([a, c], name="bad")


# ---------------------------------------------------------------------------------------------- audit


def test_clean_example_pack_has_no_findings():
    assert audit_pack(LFPack.from_yaml(EXAMPLE)) == []


def test_audit_finds_seeded_leaks():
    leaky = LFPack.from_dict({**pack_dict(
        lf("bytes_literal", "attack", ("bytes", ">", 48213)),
        lf("victim_ip", "attack", ("dst_ip", "in", [3232235777, 3232235778])),
        lf("from_src", "benign", ("src", "==", "mean")),
        lf("precise", "attack", ("duration", ">", "mean + 37.2817")),
        lf("offset", "attack", ("packets", ">", "median + 1500")),
        lf("scaled_ok", "attack", ("packets", ">", "q3 + 1.5*iqr")),
        lf("const_expr", "attack", ("bytes", "<", "3*500")),
        lf("uses_label", "attack", ("label", "==", "max")),
        lf("bytes_le_1234_attack", "attack", ("bytes", "<=", "p10")),
        lf("described", "benign", ("packets", "<", "p5"), description="seen from 192.168.10.5 and scanner.example.org"),
        lf("by_mail", "benign", ("packets", "<", "p1"), author="alice@uni-a.example.edu"),
        lf("flows", "attack", ("flow_id", ">", "p99")),
        name="leaky"), "universal_features": ["src_port", "bytes_total"],
        "description": "collected at 2001:db8::/32 on 1577836800"})
    findings = audit_pack(leaky)
    kinds = {(f.lf, f.kind) for f in findings}
    assert ("bytes_literal", "literal_threshold") in kinds
    assert ("victim_ip", "literal_in_list") in kinds and ("victim_ip", "identifier_feature") in kinds
    assert ("from_src", "identifier_feature") in kinds
    assert ("precise", "precise_constant") in kinds
    assert ("offset", "literal_offset") in kinds
    assert ("const_expr", "literal_threshold") in kinds
    assert ("uses_label", "label_feature") in kinds
    assert ("bytes_le_1234_attack", "number_in_name") in kinds
    assert ("described", "address_literal") in kinds
    assert ("flows", "identifier_feature") in kinds
    assert (None, "universal_declaration") in kinds
    assert (None, "address_literal") in kinds and (None, "precise_constant") in kinds
    assert not any(f.lf == "scaled_ok" for f in findings)
    assert not any(f.lf == "by_mail" for f in findings)  # author e-mail: attribution, allowed by design
    described = [f for f in findings if f.lf == "described" and f.kind == "address_literal"]
    assert {m for f in described for m in ("192.168.10.5", "scanner.example.org") if m in f.message} == {"192.168.10.5", "scanner.example.org"}
    lit = next(f for f in findings if f.lf == "bytes_literal")
    assert lit.field == "lfs[0].when[0].value" and "48213" in lit.message

    remaining = audit_pack(leaky, allow=[f.lf for f in findings if f.lf] + ["leaky"])
    assert remaining == []
    assert all(f.lf != "bytes_literal" for f in audit_pack(leaky, allow=["bytes_literal"]))


def test_audit_literal_on_universal_feature_is_fine_and_apply_still_works_with_literals():
    pack = LFPack.from_dict(pack_dict(
        lf("ntp", "attack", ("src_port", "==", 123), ("protocol", "in", [17])),
        lf("dst_ephemeral", "benign", ("dst_port", "between", [49152, 65535])),
        lf("raw_bytes", "attack", ("bytes", ">", 100)),
    ))
    findings = audit_pack(pack)
    assert [(f.lf, f.kind) for f in findings] == [("raw_bytes", "literal_threshold")]
    df = pd.DataFrame({"src_port": [123, 80], "protocol": [17, 6], "dst_port": [50000, 80], "bytes": [500.0, 50.0]})
    assert apply_lfs(pack, df).tolist() == [[1, 0, 1], [-1, -1, -1]]
