"""The query language of ``package_search``: a documented subset of CKAN's Solr syntax,
parsed into a small tree (:class:`Term`, :class:`Range`, :class:`Not`, :class:`And`,
:class:`Or`, :class:`All`) that :class:`~catalogue.search.index.SearchIndex` evaluates.

Query syntax (``q`` and ``fq``)
-------------------------------
``word``, ``"a phrase"`` (all its words), ``field:value``, ``field:"quoted value"``,
``field:(a OR b)``, ``field:[A TO B]`` / ``{A TO B}`` (numbers and dates; ``*`` and ``NOW``
allowed), ``field:*``, ``field:pre*``, ``+x``, ``-x``, ``NOT x``, ``a AND b``, ``a OR b``,
parentheses, ``*:*``. Terms are ANDed by default.

``sort`` is ``field asc|desc`` separated by commas.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..errors import CatalogueError


class SearchQueryError(CatalogueError):
    """A q/fq/sort/rows parameter the search cannot parse (HTTP 400, CKAN 'Search Query
    Error')."""

    status = 400


# -- query parsing ---------------------------------------------------------------------
@dataclass
class Term:
    field: str | None  # None: full text
    value: str
    phrase: bool = False


@dataclass
class Range:
    field: str
    lo: str
    hi: str
    lo_incl: bool = True
    hi_incl: bool = True


@dataclass
class Not:
    node: object


@dataclass
class And:
    nodes: list


@dataclass
class Or:
    nodes: list


class All:
    pass


_TOKEN_RE = re.compile(
    r"""\s*(?:
      (?P<lp>\() | (?P<rp>\)) |
      (?P<range>[\[{]\s*(?P<lo>"[^"]*"|\S+)\s+TO\s+(?P<hi>"[^"]*"|[^\]}\s]+)\s*[\]}]) |
      (?P<quoted>"(?:[^"\\]|\\.)*") |
      (?P<word>(?:[^\s()"\\:\[\]{}]|\\.)+) |
      (?P<colon>:)
    )""",
    re.VERBOSE,
)
_KINDS = ("lp", "rp", "range", "quoted", "word", "colon")


def _lex(s: str) -> list[tuple[str, str]]:
    toks, pos = [], 0
    s = s.strip()
    while pos < len(s):
        m = _TOKEN_RE.match(s, pos)
        if not m or m.end() == pos:
            if s[pos:].strip() == "":
                break
            raise SearchQueryError(
                f"Search Query is invalid: cannot parse {s[pos : pos + 20]!r}",
                hint="see docs/api.md 'package_search' for the supported syntax",
            )
        pos = m.end()
        # a match that moved on is one of the alternatives (lo/hi are parts of a range)
        kind = next(k for k in _KINDS if m.group(k) is not None)
        toks.append((kind, m.group(kind)))
    return toks


def _unquote(v: str) -> str:
    if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        v = v[1:-1]
    return re.sub(r"\\(.)", r"\1", v)


# Bounds on one query: its length, and how deep parentheses and NOTs may nest (the parser
# recurses once per level; 5,000 '(' used to be a RecursionError, a 500).
MAX_QUERY_CHARS = 4000
MAX_DEPTH = 32


class _Parser:
    def __init__(self, s: str) -> None:
        self.src = s
        if len(s) > MAX_QUERY_CHARS:
            raise self.error(f"longer than {MAX_QUERY_CHARS} characters ({len(s)})")
        self.toks = _lex(s)
        self.i = 0
        self.depth = 0

    def deeper(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nested more than {MAX_DEPTH} levels deep")

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def take(self):
        t = self.peek()
        self.i += 1
        return t

    def error(self, msg: str) -> SearchQueryError:
        src = self.src if len(self.src) <= 200 else self.src[:200] + "…"
        return SearchQueryError(
            f"Search Query is invalid: {msg} in {src!r}",
            hint="see docs/api.md 'package_search' for the supported syntax",
        )

    def parse(self):
        if not self.toks:
            return All()
        node = self.expr(None)
        if self.i < len(self.toks):
            raise self.error(f"unexpected {self.peek()[1]!r}")
        return node

    def expr(self, field):
        parts = [self.and_expr(field)]
        while self.peek() == ("word", "OR") or self.peek() == ("word", "||"):
            self.take()
            parts.append(self.and_expr(field))
        return parts[0] if len(parts) == 1 else Or(parts)

    def and_expr(self, field):
        parts = []
        while True:
            kind, val = self.peek()
            if kind is None or kind == "rp" or (kind == "word" and val in ("OR", "||")):
                break
            if kind == "word" and val in ("AND", "&&"):
                self.take()
                continue
            parts.append(self.unary(field))
        if not parts:
            raise self.error("empty expression")
        return parts[0] if len(parts) == 1 else And(parts)

    def unary(self, field):
        kind, val = self.peek()
        if kind == "word" and val == "NOT":
            self.take()
            self.deeper()
            node = Not(self.unary(field))
            self.depth -= 1
            return node
        if kind == "word" and val[0] in "+-" and len(val) > 1:
            self.toks[self.i] = ("word", val[1:])
            node = self.primary(field)
            return Not(node) if val[0] == "-" else node
        if kind == "word" and val in ("+", "-"):
            self.take()
            node = self.primary(field)
            return Not(node) if val == "-" else node
        return self.primary(field)

    def primary(self, field):
        kind, val = self.take()
        if kind == "lp":
            self.deeper()
            node = self.expr(field)
            if self.take()[0] != "rp":
                raise self.error("missing ')'")
            self.depth -= 1
            return node
        if kind == "quoted":
            return Term(field, _unquote(val), phrase=True)
        if kind == "range":
            if field is None:
                raise self.error("a range needs a field, e.g. metadata_modified:[A TO B]")
            m = re.match(r"([\[{])\s*(\"[^\"]*\"|\S+)\s+TO\s+(\"[^\"]*\"|[^\]}\s]+)\s*([\]}])", val)
            return Range(field, _unquote(m.group(2)), _unquote(m.group(3)),
                         m.group(1) == "[", m.group(4) == "]")  # fmt: skip
        if kind == "word":
            if self.peek()[0] == "colon":
                self.take()
                if field is not None:
                    raise self.error("nested field")
                name = val
                if self.peek()[0] is None:
                    raise self.error(f"no value after '{name}:'")
                if name == "*":
                    v = self.primary(name)
                    return All() if isinstance(v, Term) and v.value == "*" else v
                return self.unary(name) if self.peek()[0] != "lp" else self.primary(name)
            return Term(field, _unquote(val))
        raise self.error(f"unexpected {val!r}")


def parse_query(s: str | None):
    return _Parser(s or "").parse()


# -- values ----------------------------------------------------------------------------
def _num(v: str, *, upper: bool = False) -> float:
    """A number or a date (as epoch seconds) from a query or a field value."""
    v = v.strip()
    if v in ("*", ""):
        return math.inf if upper else -math.inf
    try:
        return float(v)
    except ValueError:
        pass
    m = re.match(r"^NOW(?:([+-]\d+)(DAYS?|HOURS?|MONTHS?|YEARS?))?(?:/(DAY|HOUR))?$", v)
    if m:
        now = datetime.now(UTC).replace(tzinfo=None)
        if m.group(1):
            unit = m.group(2).rstrip("S")
            days = {"DAY": 1, "HOUR": 1 / 24, "MONTH": 30, "YEAR": 365}[unit]
            try:
                if len(m.group(1)) > 9:  # more than 8 digits: beyond any date either way
                    raise OverflowError
                now = now + timedelta(days=int(m.group(1)) * days)
            except OverflowError:  # beyond year 1..9999: no date to compare with
                raise SearchQueryError(
                    f"Search Query is invalid: {v[:40]!r} is outside the years 1 to 9999",
                    hint="use * for an open end of a range, e.g. metadata_created:[* TO NOW]",
                ) from None
        if m.group(3) == "DAY":
            now = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return now.replace(tzinfo=UTC).timestamp()
    try:
        d = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise SearchQueryError(
            f"Search Query is invalid: {v!r} is neither a number nor a date",
            hint="dates look like 2024-01-31 or 2024-01-31T00:00:00Z",
        ) from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return d.timestamp()


def _try_num(v: str) -> float:
    try:
        return _num(v)
    except SearchQueryError:
        return math.nan


# -- fields and sort -------------------------------------------------------------------
_ALIASES = {"tag": "tags", "title": "title", "organization_id": "owner_org"}


def _canon(field: str) -> str:
    return _ALIASES.get(field, field)


def parse_sort(s: str) -> list[tuple[str, bool]]:
    out = []
    for part in s.split(","):
        bits = part.split()
        if not bits:
            continue
        if len(bits) > 2 or (len(bits) == 2 and bits[1].lower() not in ("asc", "desc")):
            raise SearchQueryError(
                f"Search Query is invalid: sort {part.strip()!r} must be 'field asc|desc'",
                hint="e.g. sort=metadata_modified desc",
            )
        name = bits[0]
        if name == "title":
            name = "title_string"
        out.append((name, len(bits) == 2 and bits[1].lower() == "desc"))
    return out
