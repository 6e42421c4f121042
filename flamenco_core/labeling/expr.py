"""The safe evaluator for threshold expressions in LF specs (``"q3 + 1.5*iqr"``).

A hand-written tokenizer and recursive-descent parser of a small grammar (no ``eval``, ``compile`` or
``ast``), with limits on length, tokens, depth and numbers; every refusal is a :class:`SpecError`. The
grammar: docs/labeling.md, section ``expr.py``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any, Callable, Iterator, Optional, Union

from flamenco_core.errors import UsageError

MAX_LENGTH = 256
MAX_TOKENS = 128
MAX_DEPTH = 24
MAX_NUMBER = 1e15
#: A number token longer than this is refused before conversion (no multi-megabyte digit strings).
MAX_NUMBER_CHARS = 32

BASE_STATS = ("count", "mean", "std", "min", "max", "median", "q1", "q3", "iqr")
VOCABULARY_HELP = "count, mean, std, min, max, median, q1, q3, iqr, pNN (0 <= NN <= 100)"


class SpecError(UsageError):
    """A pack, LF spec or threshold expression that cannot be loaded or applied (exit 2: bad input).

    Deliberately not a ``ValueError``: pydantic wraps ``ValueError`` raised inside validators into its
    own error, and the message here (pack, LF, token, position) is the one users need to see.
    """

    def __init__(
        self,
        message: str,
        *,
        pack: Optional[str] = None,
        lf: Optional[str] = None,
        token: Optional[str] = None,
        position: Optional[int] = None,
        expression: Optional[str] = None,
    ) -> None:
        self.message = message
        self.pack = pack
        self.lf = lf
        self.token = token
        self.position = position
        self.expression = expression
        super().__init__(str(self))

    def with_context(self, *, pack: Optional[str] = None, lf: Optional[str] = None) -> "SpecError":
        """A copy with the pack/LF filled in where they were unknown at the point of failure."""
        return SpecError(
            self.message,
            pack=self.pack or pack,
            lf=self.lf or lf,
            token=self.token,
            position=self.position,
            expression=self.expression,
        )

    def __str__(self) -> str:
        where = []
        if self.pack:
            where.append(f"pack {self.pack!r}")
        if self.lf:
            where.append(f"LF {self.lf!r}")
        text = (", ".join(where) + ": " if where else "") + self.message
        if self.token is not None:
            text += f" (token {self.token!r}"
            if self.position is not None:
                text += f" at position {self.position}"
            text += ")"
        if self.expression is not None:
            shown = self.expression if len(self.expression) <= 80 else self.expression[:77] + "..."
            text += f" in expression {shown!r}"
        return text


# ---------------------------------------------------------------------------------------------- stats

_PCT = re.compile(r"p(\d{1,3}(?:\.\d{1,6})?)", re.ASCII)
_ALIAS_PCT = {"q1": 25.0, "median": 50.0, "q3": 75.0, "min": 0.0, "max": 100.0}
_PCT_ALIAS = {v: k for k, v in _ALIAS_PCT.items()}


def canonical_stat(name: str) -> Optional[str]:
    """The canonical name of a statistic, or ``None`` if ``name`` is not in the vocabulary.

    Percentiles that have a describe() name get it (``p25`` -> ``q1``, ``p50`` -> ``median``,
    ``p75`` -> ``q3``, ``p0`` -> ``min``, ``p100`` -> ``max``) so each statistic is computed and
    recorded once; others are written minimally (``p05`` -> ``p5``, ``p99.90`` -> ``p99.9``).
    """
    if name in BASE_STATS:
        return name
    m = _PCT.fullmatch(name)
    if not m:
        return None
    q = float(m.group(1))
    if not 0.0 <= q <= 100.0:
        return None
    if q in _PCT_ALIAS:
        return _PCT_ALIAS[q]
    return "p" + format_percentile(q)


def format_percentile(q: float) -> str:
    """``99.9`` -> ``'99.9'``, ``5.0`` -> ``'5'``."""
    text = f"{q:.6f}".rstrip("0").rstrip(".")
    return text


def percentile_of(stat: str) -> Optional[float]:
    """The percentile (0..100) a canonical statistic stands for, or ``None`` (mean, std, count, iqr)."""
    if stat in _ALIAS_PCT:
        return _ALIAS_PCT[stat]
    if stat.startswith("p") and _PCT.fullmatch(stat):
        return float(stat[1:])
    return None


# ---------------------------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Num:
    value: float
    text: str
    pos: int


@dataclass(frozen=True)
class Stat:
    stat: str  # canonical name
    written: str
    feature: Optional[str]  # None: the condition's own feature
    pos: int


@dataclass(frozen=True)
class Neg:
    operand: "Node"
    pos: int


@dataclass(frozen=True)
class Bin:
    op: str
    left: "Node"
    right: "Node"
    pos: int


Node = Union[Num, Stat, Neg, Bin]


@dataclass(frozen=True)
class _Tok:
    kind: str  # num, name, op, lpar, rpar, end
    text: str
    pos: int


# ASCII only: str.isdigit()/isalpha() accept other scripts' digits and letters, which the regexes do not.
_DIGITS = frozenset("0123456789")
_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NUM = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.\d+)?", re.ASCII)


def _tokenize(text: str) -> Iterator[_Tok]:
    # A generator, so the parser reports the first problem in reading order: in "__import__('os')"
    # that is the forbidden name, not the quote that follows it.
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t":
            i += 1
            continue
        if c in _DIGITS or (c == "." and i + 1 < n and text[i + 1] in _DIGITS):
            m = _NUM.match(text, i)
            assert m is not None
            # A number glued to a name ("2std") is a typo for "2*std"; say so instead of guessing.
            if m.end() < n and text[m.end()] in _NAME_START:
                end = _NAME.match(text, m.end())
                bad = text[i : end.end() if end else m.end() + 1]
                raise SpecError("a number cannot be followed directly by a name (missing '*'?)", token=bad, position=i)
            yield _Tok("num", m.group(0), i)
            i = m.end()
            continue
        if c in _NAME_START:
            m = _NAME.match(text, i)
            assert m is not None
            yield _Tok("name", m.group(0), i)
            i = m.end()
            continue
        if c == "*" and text.startswith("**", i):
            raise SpecError("'**' (power) is not part of the threshold grammar", token="**", position=i)
        if c in "+-*/":
            yield _Tok("op", c, i)
            i += 1
            continue
        if c == "(":
            yield _Tok("lpar", c, i)
            i += 1
            continue
        if c == ")":
            yield _Tok("rpar", c, i)
            i += 1
            continue
        if c == ".":
            m = _NAME.match(text, i + 1)
            raise SpecError("attribute access is not allowed", token="." + (m.group(0) if m else ""), position=i)
        if c in "[]{}":
            raise SpecError("indexing and literals other than numbers are not allowed", token=c, position=i)
        raise SpecError("unexpected character", token=c, position=i)
    yield _Tok("end", "", n)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self._stream = _tokenize(text)
        self.toks: list[_Tok] = []
        self.i = 0
        self.depth = 0

    def _fill(self) -> None:
        while len(self.toks) <= self.i:
            t = next(self._stream)
            if len(self.toks) >= MAX_TOKENS and t.kind != "end":
                raise SpecError(f"expression has more than {MAX_TOKENS} tokens", token=t.text, position=t.pos)
            self.toks.append(t)

    @property
    def tok(self) -> _Tok:
        self._fill()
        return self.toks[self.i]

    def _advance(self) -> _Tok:
        t = self.tok
        if t.kind != "end":
            self.i += 1
        return t

    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise SpecError("empty expression", token="", position=0)
        node = self._expr()
        if self.tok.kind != "end":
            t = self.tok
            raise SpecError("unexpected token after a complete expression", token=t.text, position=t.pos)
        return node

    def _enter(self, t: _Tok) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SpecError(f"expression nests deeper than {MAX_DEPTH} levels", token=t.text, position=t.pos)

    def _expr(self) -> Node:
        node = self._term()
        while self.tok.kind == "op" and self.tok.text in "+-":
            op = self._advance()
            node = Bin(op.text, node, self._term(), op.pos)
        return node

    def _term(self) -> Node:
        node = self._unary()
        while self.tok.kind == "op" and self.tok.text in "*/":
            op = self._advance()
            node = Bin(op.text, node, self._unary(), op.pos)
        return node

    def _unary(self) -> Node:
        t = self.tok
        if t.kind == "op" and t.text in "+-":
            self._advance()
            self._enter(t)
            operand = self._unary()
            self.depth -= 1
            return Neg(operand, t.pos) if t.text == "-" else operand
        return self._atom()

    def _atom(self) -> Node:
        t = self._advance()
        if t.kind == "num":
            if len(t.text) > MAX_NUMBER_CHARS:
                raise SpecError(f"number longer than {MAX_NUMBER_CHARS} characters", token=t.text, position=t.pos)
            value = float(t.text)
            if not math.isfinite(value) or abs(value) > MAX_NUMBER:
                raise SpecError(f"number out of range (|x| <= {MAX_NUMBER:g})", token=t.text, position=t.pos)
            return Num(value, t.text, t.pos)
        if t.kind == "name":
            return self._stat(t)
        if t.kind == "lpar":
            self._enter(t)
            node = self._expr()
            self.depth -= 1
            close = self._advance()
            if close.kind != "rpar":
                raise SpecError("expected ')'", token=close.text or "<end>", position=close.pos)
            return node
        if t.kind == "end":
            raise SpecError("expression ends where a number or statistic was expected", token="<end>", position=t.pos)
        raise SpecError("expected a number, a statistic or '('", token=t.text, position=t.pos)

    def _stat(self, t: _Tok) -> Node:
        if t.text.startswith("_"):
            raise SpecError("names starting with '_' are never allowed", token=t.text, position=t.pos)
        stat = canonical_stat(t.text)
        if stat is None:
            if _PCT.fullmatch(t.text):
                raise SpecError("percentile out of range (p0 .. p100)", token=t.text, position=t.pos)
            raise SpecError(f"unknown name; allowed statistics: {VOCABULARY_HELP}", token=t.text, position=t.pos)
        if self.tok.kind != "lpar":
            return Stat(stat, t.text, None, t.pos)
        self._advance()
        feat = self._advance()
        if feat.kind != "name" or "." in feat.text or feat.text.startswith("_"):
            raise SpecError(f"{t.text}(...) takes one feature name", token=feat.text or "<end>", position=feat.pos)
        close = self._advance()
        if close.kind != "rpar":
            raise SpecError(f"{t.text}(...) takes exactly one feature name; expected ')'", token=close.text or "<end>", position=close.pos)
        return Stat(stat, t.text, feat.text, t.pos)


# ---------------------------------------------------------------------------------------------- API

Lookup = Callable[[str, str], float]


@dataclass(frozen=True)
class Expression:
    """A parsed threshold expression. Build with :func:`parse_expression`."""

    text: str
    root: Node
    canonical: str  # token texts without whitespace: the form hashed for duplicate detection

    def nodes(self) -> Iterator[Node]:
        stack: list[Node] = [self.root]
        while stack:
            node = stack.pop()
            yield node
            if isinstance(node, Neg):
                stack.append(node.operand)
            elif isinstance(node, Bin):
                stack.extend((node.right, node.left))

    def statistics(self, feature: str) -> set[tuple[str, str]]:
        """The ``(feature, statistic)`` pairs this expression reads; bare stats read ``feature``."""
        return {(n.feature or feature, n.stat) for n in self.nodes() if isinstance(n, Stat)}

    def numbers(self) -> list[Num]:
        return [n for n in self.nodes() if isinstance(n, Num)]

    @property
    def is_constant(self) -> bool:
        """True when no statistic occurs: the expression is a literal number in disguise."""
        return not any(isinstance(n, Stat) for n in self.nodes())

    def evaluate(self, lookup: Lookup, feature: str) -> float:
        """The threshold's value, with ``lookup(feature, stat)`` supplying statistics.

        NaN statistics (e.g. ``std`` of a single value) propagate, so the condition is false and the LF
        abstains; division by zero and overflow raise :class:`SpecError`.
        """
        return self._eval(self.root, lookup, feature, exact=False)

    def evaluate_exact(self, lookup: Callable[[str, str], Any], feature: str) -> Union[int, Fraction]:
        """The threshold's value in exact rational arithmetic, ``lookup`` supplying ints or ``Fraction``s.

        The same tree walk as :meth:`evaluate`, so the privacy audit checks exactly what the applier
        computes; numbers are read from their text (``0.3`` is 3/10, not the nearest double) so that
        identities such as ``mean + 0.1*std - 0.1*std == mean`` hold without rounding error. Division by
        zero raises :class:`SpecError`.
        """
        return self._eval(self.root, lookup, feature, exact=True)

    def _eval(self, node: Node, lookup: Callable[[str, str], Any], feature: str, exact: bool) -> Any:
        if isinstance(node, Num):
            return _exact_number(node.text) if exact else node.value
        if isinstance(node, Stat):
            v = lookup(node.feature or feature, node.stat)
            # ints stay ints (exact, and cheaper than Fractions) until a division needs a Fraction
            return (v if isinstance(v, (int, Fraction)) else Fraction(v)) if exact else float(v)
        if isinstance(node, Neg):
            return -self._eval(node.operand, lookup, feature, exact)
        a = self._eval(node.left, lookup, feature, exact)
        b = self._eval(node.right, lookup, feature, exact)
        if node.op == "+":
            r = a + b
        elif node.op == "-":
            r = a - b
        elif node.op == "*":
            r = a * b
        else:
            if b == 0:
                raise SpecError("division by zero", token="/", position=node.pos, expression=self.text)
            r = Fraction(a) / b if exact else a / b
        if not exact and math.isinf(r) and math.isfinite(a) and math.isfinite(b):
            raise SpecError("arithmetic overflow", token=node.op, position=node.pos, expression=self.text)
        return r


@lru_cache(maxsize=4096)
def _exact_number(text: str) -> Fraction:
    return Fraction(text)


@lru_cache(maxsize=4096)
def _parse_cached(text: str) -> Expression:
    if len(text) > MAX_LENGTH:
        raise SpecError(f"expression longer than {MAX_LENGTH} characters", token=text[MAX_LENGTH : MAX_LENGTH + 10], position=MAX_LENGTH)
    parser = _Parser(text)
    root = parser.parse()
    return Expression(text, root, "".join(_canonical_token(t) for t in parser.toks))


def _canonical_token(t: _Tok) -> str:
    # "0.50" and "0.5", "p50" and "median" mean the same threshold: hash them the same.
    if t.kind == "num":
        v = float(t.text)
        return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)
    if t.kind == "name":
        return canonical_stat(t.text) or t.text
    return t.text


def parse_expression(text: str, *, pack: Optional[str] = None, lf: Optional[str] = None) -> Expression:
    """Parse a threshold expression, or raise :class:`SpecError` naming ``pack``, ``lf`` and the token."""
    if not isinstance(text, str):
        raise SpecError(f"a threshold expression must be a string, not {type(text).__name__}", pack=pack, lf=lf)
    try:
        return _parse_cached(text)
    except SpecError as exc:
        shown = text if len(text) <= MAX_LENGTH else text[:MAX_LENGTH]
        raise SpecError(exc.message, pack=pack, lf=lf, token=exc.token, position=exc.position, expression=shown) from None
    except RecursionError:  # pragma: no cover - MAX_DEPTH keeps recursion far below the limit
        raise SpecError("expression nests too deeply", pack=pack, lf=lf, expression=text[:80]) from None


def significant_digits(text: str) -> int:
    """Significant digits of a number as written: ``'37.2817'`` -> 6, ``'1500'`` -> 2, ``'0.05'`` -> 1.

    Trailing zeros of an integer are not counted (``1500`` says no more than ``15e2``).
    """
    mantissa = re.split(r"[eE]", text, maxsplit=1)[0].lstrip("+-")
    if "." in mantissa:
        digits = mantissa.replace(".", "").lstrip("0")
    else:
        digits = mantissa.lstrip("0").rstrip("0")
    return len(digits)
