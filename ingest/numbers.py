"""Numbers as people write them: spaces, thousands separators, accounting dashes, brackets.

Exports from spreadsheets and statistical bureaus write numbers for reading, not parsing:
``" 1,137 "`` (padded, grouped), ``" -   "`` (Excel's accounting format for zero),
``(1,234)`` (accounting negative), ``１，２３４`` (full-width digits and comma, common in
Chinese files), ``¥1,234.50`` or ``12.5%`` (signs of a declared currency or percentage).
:func:`clean_numbers` turns such a column of text into plain number text that Arrow casts, with
vectorised Arrow kernels only (no per-value Python), and counts what it changed so the
validation report can list every repair.

Steps, in order (each only where it applies):

1. full-width forms to ASCII (Unicode NFKC: ``１２３`` → ``123``, ``，`` → ``,``, ``（）`` → ``()``),
   and ``−`` (U+2212) to ``-``;
2. surrounding white space removed;
3. declared currency symbols removed (``currency:``), a trailing ``%`` removed when
   ``percent: true`` (``12.5%`` is read as 12.5: the column holds percentages);
4. ``(x)`` read as ``-x``;
5. a value of only dashes (``-``, ``–``, ``—``) read as 0;
6. the thousands separator removed (with ``thousands: "."``, a decimal comma becomes ``.``);
7. a value left empty is null.

When ``thousands:`` is not declared, :func:`infer_style` decides from the inference sample
(the rule is in its docstring).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_DASH_RE = r"^[-\x{2013}\x{2014}]+$"
_PAREN_RE = r"^\((.*)\)$"
_GROUPED_RE = r"^[+-]?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]+)?$"
_PLAIN_RE = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"


@dataclass(frozen=True)
class NumberStyle:
    """How a column's numbers are written (besides plain ``-1234.5``)."""

    thousands: str | None = None
    currency: tuple[str, ...] = ()
    percent: bool = False

    def describe(self) -> str:
        parts = []
        if self.thousands:
            parts.append(f"thousands separator {self.thousands!r}")
        if self.currency:
            parts.append("currency " + "/".join(self.currency))
        if self.percent:
            parts.append("percent sign")
        return ", ".join(parts) or "plain"


@dataclass
class Repaired:
    """What :func:`clean_numbers` changed in one array: kind -> number of values."""

    counts: dict[str, int]

    def add_to(self, total: dict[str, int]) -> None:
        for k, v in self.counts.items():
            if v:
                total[k] = total.get(k, 0) + v


# the words the validation report uses for each repair (kind -> text)
KINDS = {
    "full_width": "full-width characters read as ASCII",
    "spaces": "surrounding spaces removed",
    "currency": "currency sign removed",
    "percent": "percent sign removed",
    "parentheses": "(x) read as -x",
    "dash_zero": "accounting dash read as 0",
    "thousands": "thousands separators removed",
}


def _count(mask: pa.Array) -> int:
    return int(pc.sum(pc.fill_null(mask, False)).as_py() or 0)


def _non_ascii(arr: pa.Array) -> bool:
    data = arr.buffers()[2]
    if data is None or not data.size:
        return False
    return bool((np.frombuffer(data, np.uint8) >= 0x80).any())


def clean_numbers(arr: pa.Array, style: NumberStyle) -> tuple[pa.Array, Repaired]:
    """Number text as Arrow casts it (see the module docstring); nulls stay null."""
    counts: dict[str, int] = {}
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_string(arr.type):
        arr = pc.cast(arr, pa.string())
    if _non_ascii(arr):
        wide = pc.utf8_normalize(arr, "NFKC")
        wide = pc.replace_substring(wide, "\u2212", "-")
        counts["full_width"] = _count(pc.not_equal(wide, arr))
        arr = wide
    trimmed = pc.utf8_trim_whitespace(arr)
    counts["spaces"] = _count(pc.not_equal(pc.utf8_length(trimmed), pc.utf8_length(arr)))
    arr = trimmed
    for sym in style.currency:
        has = pc.match_substring(arr, sym)
        n = _count(has)
        if n:
            counts["currency"] = counts.get("currency", 0) + n
            arr = pc.utf8_trim_whitespace(pc.replace_substring(arr, sym, ""))
    if style.percent:
        has = pc.match_substring_regex(arr, r"%\s*$")
        n = _count(has)
        if n:
            counts["percent"] = n
            arr = pc.utf8_trim_whitespace(pc.replace_substring_regex(arr, r"%\s*$", ""))
    paren = pc.match_substring_regex(arr, _PAREN_RE)
    n = _count(paren)
    if n:
        counts["parentheses"] = n
        arr = pc.replace_substring_regex(arr, _PAREN_RE, r"-\1")
        arr = pc.replace_substring_regex(arr, r"^-\s+", "-")
        if style.currency:  # "($1,234)": the sign inside the brackets
            for sym in style.currency:
                arr = pc.replace_substring(arr, "-" + sym, "-")
    dash = pc.match_substring_regex(arr, _DASH_RE)
    n = _count(dash)
    if n:
        counts["dash_zero"] = n
        arr = pc.if_else(dash, pa.scalar("0"), arr)
    if style.thousands:
        has = pc.match_substring(arr, style.thousands)
        n = _count(has)
        if n:
            counts["thousands"] = n
            arr = pc.replace_substring(arr, style.thousands, "")
        if style.thousands == ".":
            arr = pc.replace_substring(arr, ",", ".")
    empty = pc.equal(arr, "")
    if _count(empty):
        arr = pc.if_else(empty, pa.scalar(None, pa.string()), arr)
    return arr, Repaired(counts)


def infer_style(values: pa.Array, declared: NumberStyle | None) -> NumberStyle | None:
    """The style that reads every value of a sample of text as a number, or None.

    A declared ``thousands:`` separator is used as declared. Without one, the rule is: a ``,``
    is taken as the thousands separator only when every value holding one groups its digits
    by exactly three (``1,137``, ``12,345.6``, ``(1,234)``; ``1,5`` is then not a number).
    The column is read as numbers written for people when, after the repairs of
    :func:`clean_numbers` (with the declared currency and percent signs), every non-empty
    sample value is a plain number and at least one value needed a repair (or ``thousands:``
    is declared). Plain numbers are left to the reader's native parser.
    """
    values = values.drop_null()
    if len(values) == 0:
        return None
    style = declared or NumberStyle()
    if style.thousands is None:
        normalised = pc.utf8_trim_whitespace(
            pc.utf8_normalize(values, "NFKC") if _non_ascii(values) else values
        )
        with_comma = normalised.filter(pc.match_substring(normalised, ","))
        if len(with_comma):
            stripped = pc.utf8_trim_whitespace(
                pc.replace_substring_regex(with_comma, r"^\((.*)\)$", r"\1")
            )
            for sym in style.currency:
                stripped = pc.utf8_trim_whitespace(pc.replace_substring(stripped, sym, ""))
            if style.percent:
                stripped = pc.replace_substring_regex(stripped, r"\s*%$", "")
            if not pc.all(pc.match_substring_regex(stripped, _GROUPED_RE)).as_py():
                return None
            style = NumberStyle(",", style.currency, style.percent)
    cleaned, repaired = clean_numbers(values, style)
    if not _all_numbers(cleaned):
        return None
    if not any(repaired.counts.values()) and not (declared and declared.thousands):
        return None  # plain numbers: the reader parses them natively
    return style


def _all_numbers(cleaned: pa.Array) -> bool:
    cleaned = cleaned.drop_null()
    if len(cleaned) == 0:
        return False
    return bool(pc.all(pc.match_substring_regex(cleaned, _PLAIN_RE)).as_py())


def style_from_source(thousands: str | None, currency: tuple[str, ...], percent: bool):
    """The declared style of a source (None when nothing is declared)."""
    if not thousands and not currency and not percent:
        return None
    return NumberStyle(thousands=thousands or None, currency=tuple(currency), percent=percent)


def is_integral(cleaned: pa.Array) -> bool:
    """Every non-null cleaned value is an integer of at most 15 digits."""
    cleaned = cleaned.drop_null()
    return len(cleaned) > 0 and bool(
        pc.all(pc.match_substring_regex(cleaned, r"^[+-]?(0|[1-9][0-9]{0,14})$")).as_py()
    )


def describe_repairs(column: str, counts: dict[str, int]) -> str:
    """One line of the report: what was changed in ``column``."""
    parts = [f"{KINDS.get(k, k)} ×{n:,}" for k, n in counts.items() if n]
    return f"column {column!r}: " + "; ".join(parts)


__all__ = [
    "KINDS",
    "NumberStyle",
    "Repaired",
    "clean_numbers",
    "describe_repairs",
    "infer_style",
    "is_integral",
    "style_from_source",
]
