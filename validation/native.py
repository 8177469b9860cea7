"""Row-level expectations judged with Arrow compute, without great-expectations.

great-expectations costs ~2 s to import and runs its pandas engine per chunk; the simple value
checks of the shorthand need neither. :class:`NativeChecks` judges them with vectorised Arrow
kernels in the ingest process, and writes exactly the result of
:meth:`validation.runner.RowChecks` (great-expectations' ``ExpectationValidationResult``
layout: ``element_count``, ``missing_count``, ``unexpected_count``, ``unexpected_percent``,
``partial_unexpected_list``, ``partial_unexpected_rows``), so reports, scores and
``quarantine_rows`` are the same. A validator uses it only when **every** row-level
expectation of a table is one of these (:func:`supported`); otherwise all of them go to
great-expectations, as before.

Judged natively (without ``row_condition``):

* ``not_null`` — null (and NaN in float columns, as pandas counts it) is unexpected;
* ``between`` on number columns with number bounds (``strict`` too); nulls and NaN are missing;
* ``in_set`` on text columns;
* ``regex`` on text columns, searched anywhere in the value as great-expectations does, with
  RE2 (pyarrow): ``\\d``, ``\\w``, ``\\s`` and ``\\b`` are ASCII there, where Python's ``re`` also
  matches other scripts' digits and letters; a pattern RE2 cannot compile (look-arounds,
  back-references) goes to great-expectations;
* ``length`` (between, or equal) on text columns, in characters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .gx import jsonable
from .report import SAMPLES, ExpectationResult, counted_result, passes, quarantine_reasons
from .shorthand import ROW, Expectation

_TEXT = ("string", "large_string")


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def re2_compiles(pattern: str) -> bool:
    """Does RE2 (Arrow's regex engine: linear time, no back-references or look-around)
    take ``pattern``?"""
    try:
        pc.match_substring_regex(pa.array([""], pa.string()), pattern)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def supported(e: Expectation, schema: pa.Schema) -> bool:
    """Can :class:`NativeChecks` judge this expectation exactly as great-expectations does?"""
    if e.level != ROW or e.key == "gx" or e.kwargs.get("row_condition"):
        return False
    col = e.kwargs.get("column")
    if col is None or col not in schema.names:
        return False
    t = schema.field(col).type
    if pa.types.is_dictionary(t):
        # a pattern is judged on the decoded text (great-expectations would run Python's
        # backtracking `re` on it: one value can take hours); the other checks go to it
        return (
            e.type == "expect_column_values_to_match_regex"
            and _is_text(t.value_type)
            and re2_compiles(str(e.kwargs.get("regex")))
        )
    if e.type == "expect_column_values_to_not_be_null":
        return True
    if e.type == "expect_column_values_to_be_between":
        bounds = (e.kwargs.get("min_value"), e.kwargs.get("max_value"))
        return _is_number(t) and all(
            b is None or (isinstance(b, int | float) and not isinstance(b, bool)) for b in bounds
        )
    if e.type == "expect_column_values_to_be_in_set":
        values = e.kwargs.get("value_set") or []
        return _is_text(t) and all(isinstance(v, str) for v in values)
    if e.type == "expect_column_values_to_match_regex":
        return _is_text(t) and re2_compiles(str(e.kwargs.get("regex")))
    if e.type in (
        "expect_column_value_lengths_to_be_between",
        "expect_column_value_lengths_to_equal",
    ):
        return _is_text(t)
    return False


class _Acc:
    def __init__(self) -> None:
        self.element_count = 0
        self.missing_count = 0
        self.unexpected_count = 0
        self.samples: list[tuple[Any, int]] = []


class NativeChecks:
    """The row-level half of a validation, with Arrow (the interface of ``RowChecks``)."""

    def __init__(self, expectations: list[Expectation], on_invalid: str = "fail") -> None:
        self.row_exps = expectations
        self.on_invalid = on_invalid
        self._acc = {e.index: _Acc() for e in expectations}
        self._last: tuple[int, int, dict[str, np.ndarray]] | None = None

    def check_batch(self, batch: pa.RecordBatch | pa.Table, row_offset: int) -> pa.Array | None:
        n = batch.num_rows
        quarantine = self.on_invalid == "quarantine_rows"
        failed_rows: dict[str, np.ndarray] = {}
        for e in self.row_exps if n else ():
            col = batch.column(e.kwargs["column"])
            if isinstance(col, pa.ChunkedArray):
                col = col.combine_chunks()
            if pa.types.is_dictionary(col.type):  # a pattern only (see supported)
                col = col.dictionary_decode()
            missing, bad = self._judge(e, col)
            acc = self._acc[e.index]
            acc.element_count += n
            acc.missing_count += missing
            nbad = int(pc.sum(bad).as_py() or 0) if bad is not None else 0
            acc.unexpected_count += nbad
            if not nbad:
                continue
            rows = pc.indices_nonzero(bad)
            room = SAMPLES - len(acc.samples)
            if room > 0:
                first = rows.slice(0, room)
                values = col.take(first)
                if pa.types.is_date(values.type):  # as great-expectations gives them
                    values = values.cast(pa.timestamp("s"))
                for v, r in zip(values.to_pylist(), first.to_pylist(), strict=True):
                    acc.samples.append((jsonable(v), row_offset + int(r) + 1))
            if quarantine and e.mostly >= 1:
                failed_rows[e.label] = rows.to_numpy()
        self._last = (id(batch), n, failed_rows)
        if not quarantine:
            return None
        valid = np.ones(n, dtype=bool)
        for idx in failed_rows.values():
            valid[idx] = False
        return pa.array(valid)

    def _judge(self, e: Expectation, col: pa.Array) -> tuple[int, pa.Array | None]:
        """(missing values, mask of unexpected values with no nulls) for one column."""
        null = col.is_null()
        if pa.types.is_floating(col.type):
            null = pc.or_(null, pc.fill_null(pc.is_nan(col), False))
        if e.type == "expect_column_values_to_not_be_null":
            return 0, null
        missing = int(pc.sum(null).as_py() or 0)
        kw = e.kwargs
        if e.type == "expect_column_values_to_be_between":
            ok = None
            lo, hi = kw.get("min_value"), kw.get("max_value")
            if lo is not None:
                ok = (pc.greater if kw.get("strict_min") else pc.greater_equal)(col, lo)
            if hi is not None:
                up = (pc.less if kw.get("strict_max") else pc.less_equal)(col, hi)
                ok = up if ok is None else pc.and_(ok, up)
            bad = pc.invert(ok)
        elif e.type == "expect_column_values_to_be_in_set":
            bad = pc.invert(pc.is_in(col, value_set=pa.array(kw["value_set"], col.type)))
        elif e.type == "expect_column_values_to_match_regex":
            bad = pc.invert(pc.match_substring_regex(col, str(kw["regex"])))
        elif e.type == "expect_column_value_lengths_to_equal":
            bad = pc.not_equal(pc.utf8_length(col), int(kw["value"]))
        else:  # expect_column_value_lengths_to_be_between
            length = pc.utf8_length(col)
            ok = None
            if kw.get("min_value") is not None:
                ok = pc.greater_equal(length, kw["min_value"])
            if kw.get("max_value") is not None:
                up = pc.less_equal(length, kw["max_value"])
                ok = up if ok is None else pc.and_(ok, up)
            bad = pc.invert(ok) if ok is not None else pc.is_null(col)
        bad = pc.and_(pc.fill_null(bad, False), pc.invert(null))
        return missing, bad

    def quarantine_reason(self, batch: pa.RecordBatch | pa.Table) -> pa.Array:
        if self._last is None or self._last[0] != id(batch) or self._last[1] != batch.num_rows:
            raise ValueError("quarantine_reason() takes the batch last passed to check_batch()")
        n, failed = self._last[1], self._last[2]
        return quarantine_reasons(n, failed)

    def finish(self, files: list[str]) -> Callable[[], dict[int, ExpectationResult]]:
        results = {e.index: self._result(e) for e in self.row_exps}
        return lambda: results

    def _result(self, e: Expectation) -> ExpectationResult:
        acc = self._acc[e.index]
        result, pct = counted_result(
            e.type, acc.element_count, acc.missing_count, acc.unexpected_count, acc.samples
        )
        return ExpectationResult(
            index=e.index,
            label=e.label,
            type=e.type,
            kwargs=e.kwargs,
            level=ROW,
            success=passes(pct, e.mostly),
            result=result,
            mostly=e.mostly,
            meta=dict(e.meta),
        )

    def close(self) -> None:
        pass


__all__ = ["NativeChecks", "supported"]
