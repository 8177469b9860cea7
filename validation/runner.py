"""BatchValidator: validate a dataset while it streams in, then once over its staged Parquet.

The ingest pipeline builds one validator per table of a dataset version::

    v = BatchValidator(spec.id, list(spec.expectations), arrow_schema, spec.on_invalid, file=...)
    for chunk in chunks:                        # record batches or tables of ~1M rows
        mask = v.check_batch(chunk, row_offset) # None unless on_invalid == "quarantine_rows"
        ...write chunk.filter(mask) to staging, chunk.filter(~mask) + v.quarantine_reason(chunk)
           to the quarantine file ...
    report = v.finish(staged_parquet_files)
    v.close()

Two halves:

* :class:`RowChecks` — everything great-expectations does: row-level expectations on every
  chunk (pandas engine; the context, suites and batch definitions built once) and, in
  ``results``, the other great-expectations expectations over the staged files.
* :class:`BatchValidator` — parses the expectations, feeds the chunks to a ``RowChecks``, runs
  the dataset-level expectations once with DuckDB over the staged files
  (:mod:`validation.dataset_level`) and merges everything into one report.

The ``RowChecks`` runs in this process, or with ``worker=True`` in a separate process
(:mod:`validation.worker`): great-expectations' import (~2.3 s, GIL-bound) and its per-chunk
work then overlap the reading and writing done here, and the report is the same.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import gx as gxw
from .errors import ExpectationConfigError
from .report import (
    ON_INVALID,
    SAMPLES,
    ExpectationResult,
    ValidationReport,
    counted_result,
    empty_rows,
    passes,
    quarantine_reasons,
)
from .shorthand import DATASET, GX_FULL, ROW, Expectation, parse_expectations

_INT_NULLABLE = {
    pa.int8(): "Int8",
    pa.int16(): "Int16",
    pa.int32(): "Int32",
    pa.int64(): "Int64",
    pa.uint8(): "UInt8",
    pa.uint16(): "UInt16",
    pa.uint32(): "UInt32",
    pa.uint64(): "UInt64",
}


class _Acc:
    """What one row-level expectation has seen so far, over all batches."""

    def __init__(self) -> None:
        self.element_count = 0
        self.missing_count = 0
        self.unexpected_count = 0
        self.counted = False  # GX returned unexpected counts (map expectation)
        self.batches_failed = 0
        self.observed: list[Any] = []
        self.samples: list[tuple[Any, int]] = []
        self.exception: str | None = None


# expectations decided by each value alone: safe to judge on distinct values
VALUEWISE = frozenset(
    {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_match_regex",
        "expect_column_value_lengths_to_be_between",
        "expect_column_value_lengths_to_equal",
        "expect_column_values_to_be_in_type_list",
    }
)
DISTINCT_RATIO = 0.25  # use the distinct-value path when a column has at most n/4 values


class RowChecks:
    """The great-expectations half of a validation: row-level expectations chunk by chunk,
    then the other great-expectations expectations once over the staged files.

    Built from the raw ``expectations:`` entries (so it can be built in a worker process);
    raises :class:`ExpectationConfigError` for a ``gx:`` entry great-expectations rejects.
    """

    def __init__(
        self,
        dataset_id: str,
        expectations: list[dict] | tuple[dict, ...],
        schema: pa.Schema,
        on_invalid: str = "fail",
        file: str | None = None,
        *,
        table: str | None = None,
    ) -> None:
        import pandas  # noqa: F401, PLC0415 - an import statement: it works where pyarrow
        # is kept from importing pandas itself (ingest.arrow_pandas), and to_pandas needs it

        self.dataset_id = dataset_id
        self.schema = schema
        self.on_invalid = on_invalid
        self.file = file
        parsed = parse_expectations(
            expectations, schema, dataset_id=dataset_id, file=file, table=table
        )
        self.expectations = [e for e in parsed if e.level != DATASET]
        self._classify_gx()
        self.row_exps = [e for e in self.expectations if e.level == ROW]
        self._acc = {e.index: _Acc() for e in self.row_exps}
        self._columns = _columns_read(self.row_exps, schema)
        # One suite per set of columns, run on a frame of just those columns: great-expectations
        # copies its whole domain frame for every metric, so narrow frames cost far less
        # (measured: 1M bus GPS rows x 9 expectations, 4.8 s on one wide frame, 2.8 s split).
        # Columns judged value by value on their distinct values are bundled: one suite run for
        # several small frames instead of one run each (each run has a fixed cost, ~25 ms).
        groups: dict[tuple[str, ...], list[Expectation]] = {}
        for e in self.row_exps:
            cols = schema.names if _conditional(e) else e.columns
            groups.setdefault(tuple(cols), []).append(e)
        self._groups = [(list(cols), exps) for cols, exps in groups.items()]
        self._valuewise = [
            len(cols) == 1 and all(e.type in VALUEWISE and not _conditional(e) for e in exps)
            for cols, exps in self._groups
        ]
        self._suites: dict[tuple[int, ...], Any] = {}  # by the groups they run, built on use
        self._plans: dict[frozenset[int], list[list[int]]] = {}
        self._last: tuple[int, int, dict[str, np.ndarray]] | None = None

    # -- construction helpers ---------------------------------------------------------
    def _classify_gx(self) -> None:
        for e in self.expectations:
            if e.key != "gx":
                continue
            try:  # builds it (so checks name and kwargs) before asking its kind
                gxw.build_expectation(e.type, self._runtime_kwargs(e))
                e.level = ROW if gxw.is_row_level(e.type) else GX_FULL
            except ValueError as err:
                raise ExpectationConfigError(
                    str(err),
                    index=e.index,
                    key="gx",
                    dataset_id=self.dataset_id,
                    file=self.file,
                    hint="use a great-expectations 1.x expectation name and its kwargs, "
                    "see https://greatexpectations.io/expectations/",
                ) from None

    def _runtime_kwargs(self, e: Expectation) -> dict[str, Any]:
        """The kwargs handed to great-expectations: temporal bounds as pandas Timestamps."""
        kw = dict(e.kwargs)
        if e.type == "expect_column_values_to_be_between" and kw.get("column") in self.schema.names:
            t = self.schema.field(kw["column"]).type
            for k in ("min_value", "max_value"):
                if isinstance(kw.get(k), str):
                    kw[k] = _temporal_bound(kw[k], t, e, self)
        return kw

    # -- per chunk ----------------------------------------------------------------------
    def check_batch(
        self,
        batch: pa.RecordBatch | pa.Table,
        row_offset: int,
        counts: dict[str, pa.StructArray] | None = None,
    ) -> pa.Array | None:
        """Run the row-level expectations on ``batch`` (rows ``row_offset+1 ...``).

        ``counts`` may hold :func:`distinct_counts` of the batch's columns, computed earlier
        (the worker does it while great-expectations is still importing).
        Returns the mask of rows that passed every row-level expectation (those without
        ``mostly``) when ``on_invalid == "quarantine_rows"``, else None.
        """
        n = batch.num_rows
        quarantine = self.on_invalid == "quarantine_rows"
        failed_rows: dict[str, np.ndarray] = {}
        results: dict[int, list[dict]] = {}
        if n:
            distinct = self._distinct_values(batch, counts or {})
            for bundle in self._bundle_plan(distinct):
                results.update(self._by_distinct_values(bundle, distinct, n, quarantine))
            df = None
            for gid, (cols, _exps) in enumerate(self._groups):
                if gid not in results:  # judged row by row, on a frame of its columns
                    if df is None:
                        df = _to_pandas(batch, self._columns)
                    results[gid] = self._suite((gid,)).validate(df[cols], complete=quarantine)
        for gid, (_cols, exps) in enumerate(self._groups if n else ()):
            for e, res in zip(exps, results[gid], strict=True):
                idx = self._accumulate(e, res, row_offset)
                if quarantine and e.mostly >= 1 and idx is not None and len(idx):
                    failed_rows[e.label] = idx
        self._last = (id(batch), n, failed_rows)
        if not quarantine:
            return None
        valid = np.ones(n, dtype=bool)
        for idx in failed_rows.values():
            valid[idx] = False
        return pa.array(valid)

    def _bundle_plan(self, distinct: dict) -> list[list[int]]:
        """Bundles for this set of groups: planned on the first batch that has it and kept, so
        later batches run the same suites (a new bundle would build a new suite)."""
        key = frozenset(distinct)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _bundles({g: len(vc) for g, (_c, vc) in distinct.items()})
        return plan

    def _suite(self, gids: tuple[int, ...]) -> Any:
        """The great-expectations suite running the expectations of groups ``gids``."""
        suite = self._suites.get(gids)
        if suite is None:
            exps = [e for g in gids for e in self._groups[g][1]]
            cols = [c for g in gids for c in self._groups[g][0]]
            items = [(e.type, self._runtime_kwargs(e)) for e in exps]
            try:
                suite = gxw.GxSuite(f"{self.dataset_id}_{'_'.join(cols)}"[:120], items)
            except ValueError as err:  # pragma: no cover — each entry was already checked
                raise ExpectationConfigError(
                    str(err), index=-1, dataset_id=self.dataset_id, file=self.file
                ) from None
            self._suites[gids] = suite
        return suite

    def _distinct_values(self, batch, known: dict) -> dict[int, tuple[Any, pa.StructArray]]:
        """Groups judged on distinct values in this batch: each with its (decoded) column and
        value counts. For expectations decided value by value (null, range, set, pattern,
        length, type) a row fails exactly when its value does; used when the column repeats
        values a lot (codes, plates, routes, coordinates on a grid)."""
        out = {}
        n = batch.num_rows
        for gid, (cols, _exps) in enumerate(self._groups):
            if not self._valuewise[gid]:
                continue
            col = _decoded(batch.column(cols[0]))
            counts = known.get(cols[0])
            if counts is None:
                counts = pc.value_counts(col)
            if len(counts) <= n * DISTINCT_RATIO:
                out[gid] = (col, counts)
        return out

    def _by_distinct_values(self, bundle: list[int], distinct: dict, n: int, quarantine: bool):
        """Run great-expectations once on the distinct values of the columns of ``bundle`` (one
        frame, shorter columns padded with their first value, whose verdicts are dropped) and
        map counts and row numbers back with Arrow. Results have the same shape as a run on
        every row."""
        height = max(len(distinct[g][1]) for g in bundle)
        arrays, names = [], []
        for g in bundle:
            values = distinct[g][1].field("values")
            if len(values) < height:
                pad = pa.array(np.zeros(height - len(values), dtype=np.int64))
                values = pa.concat_arrays([values, values.take(pad)])
            arrays.append(values)
            names.append(self._groups[g][0][0])
        frame = _to_pandas(pa.table(arrays, names=names), names)
        raw = self._suite(tuple(bundle)).validate(frame, complete=True)
        out: dict[int, list[dict]] = {}
        at = 0
        for g in bundle:
            col, counts = distinct[g]
            exps = self._groups[g][1]
            out[g] = [
                _map_back(res, e.type, col, counts, n, quarantine)
                for e, res in zip(exps, raw[at : at + len(exps)], strict=True)
            ]
            at += len(exps)
        return out

    def _accumulate(self, e: Expectation, res: dict, row_offset: int) -> np.ndarray | None:
        acc = self._acc[e.index]
        r = res["result"]
        if res["exception"] and acc.exception is None:
            acc.exception = res["exception"]
        if not res["success"]:
            acc.batches_failed += 1
        if "unexpected_count" not in r:
            if "observed_value" in r and gxw.jsonable(r["observed_value"]) not in acc.observed:
                acc.observed.append(gxw.jsonable(r["observed_value"]))
            return None
        acc.counted = True
        acc.element_count += int(r.get("element_count") or 0)
        acc.missing_count += int(r.get("missing_count") or 0)
        acc.unexpected_count += int(r.get("unexpected_count") or 0)
        room = SAMPLES - len(acc.samples)
        if room > 0:
            values = r.get("partial_unexpected_list") or []
            rows = r.get("partial_unexpected_index_list") or []
            for v, i in zip(values[:room], rows[:room], strict=False):
                if isinstance(i, dict):  # with unexpected_index_column_names
                    i = next(iter(i.values()))
                acc.samples.append((gxw.jsonable(v), row_offset + int(i) + 1))
        idx = r.get("unexpected_index_list")
        if idx is None:
            return None
        return np.asarray([int(i) for i in idx if not isinstance(i, dict)], dtype=np.int64)

    def quarantine_reason(self, batch: pa.RecordBatch | pa.Table) -> pa.Array:
        """Per row of the batch just checked: the failed expectations ("; "-joined), or null."""
        if self._last is None or self._last[0] != id(batch) or self._last[1] != batch.num_rows:
            raise ValueError("quarantine_reason() takes the batch last passed to check_batch()")
        n, failed = self._last[1], self._last[2]
        return quarantine_reasons(n, failed)

    # -- once, at the end -----------------------------------------------------------------
    def finish(self, files: list[str]) -> Callable[[], dict[int, ExpectationResult]]:
        """The results of every expectation this half runs, by index, when called."""
        return lambda: self.results(files)

    def results(self, files: list[str]) -> dict[int, ExpectationResult]:
        self.close()
        out = {e.index: self._row_result(e) for e in self.row_exps}
        full = [e for e in self.expectations if e.level == GX_FULL]
        if full:
            outcomes = self._gx_full(full, files)
            out.update({e.index: outcome_result(e, outcomes[e.index]) for e in full})
        return out

    def close(self) -> None:
        """Forget the suites (idempotent)."""
        for suite in self._suites.values():
            suite.close()
        self._suites = {}

    def _row_result(self, e: Expectation) -> ExpectationResult:
        acc = self._acc[e.index]
        if acc.counted:
            result, pct = counted_result(
                e.type, acc.element_count, acc.missing_count, acc.unexpected_count, acc.samples
            )
            success = passes(pct, e.mostly) and acc.exception is None
        else:  # dtype-level answer (type check on a typed column), or no batch at all
            result = {"observed_value": acc.observed[0] if len(acc.observed) == 1 else acc.observed}
            if not acc.observed:  # no rows at all
                result = {
                    "element_count": 0,
                    "unexpected_count": 0,
                    "unexpected_percent": 0.0,
                    "partial_unexpected_list": [],
                    "partial_unexpected_rows": [],
                }
            success = acc.batches_failed == 0 and acc.exception is None
        return ExpectationResult(
            index=e.index,
            label=e.label,
            type=e.type,
            kwargs=e.kwargs,
            level=ROW,
            success=success,
            result=result,
            exception=acc.exception,
            mostly=e.mostly,
            meta=dict(e.meta),
        )

    def _gx_full(self, exps: list[Expectation], files: list[str]) -> dict[int, dict]:
        """Other (aggregate, table) GX expectations: run once on the columns they name.

        These need whole columns in memory (great-expectations' pandas engine)."""
        import pyarrow.parquet as pq  # noqa: PLC0415

        cols = sorted({c for e in exps for c in e.columns})
        needs_all = any(not e.columns or _conditional(e) for e in exps)
        if files:
            table = pa.concat_tables(
                [pq.read_table(f, columns=None if needs_all else cols) for f in files]
            )
        else:
            table = self.schema.empty_table()
            if not needs_all:
                table = table.select(cols)
        suite = gxw.GxSuite(
            f"{self.dataset_id}_full", [(e.type, self._runtime_kwargs(e)) for e in exps]
        )
        try:
            res = suite.validate(table.to_pandas(date_as_object=False))
        finally:
            suite.close()
        out = {}
        for e, r in zip(exps, res, strict=True):
            result = {k: gxw.jsonable(v) for k, v in r["result"].items()}
            if "partial_unexpected_index_list" in result:
                result["partial_unexpected_rows"] = [
                    int(i) + 1
                    for i in result.pop("partial_unexpected_index_list")
                    if isinstance(i, int)
                ]
            out[e.index] = {"success": r["success"], "result": result, "exception": r["exception"]}
        return out


class BatchValidator:
    """Validate one dataset: ``check_batch`` per chunk, then ``finish`` once, then ``close``.

    ``worker=True`` runs the great-expectations half in a worker process (not for
    ``quarantine_rows``, which needs each chunk's verdict before writing it); the worker's
    death is raised here as a :class:`~validation.worker.ValidationWorkerError`.
    """

    def __init__(
        self,
        dataset_id: str,
        expectations: list[dict] | tuple[dict, ...],
        schema: pa.Schema,
        on_invalid: str = "fail",
        file: str | None = None,
        *,
        resolve_dataset: Callable[[str], list[str]] | None = None,
        now: dt.datetime | None = None,
        table: str | None = None,
        worker: bool = False,
    ) -> None:
        if on_invalid not in ON_INVALID:
            raise ValueError(f"on_invalid must be one of {ON_INVALID}, got {on_invalid!r}")
        self.dataset_id = dataset_id
        self.schema = schema
        self.on_invalid = on_invalid
        self.file = file
        self.resolve_dataset = resolve_dataset
        self.now = now
        self.table = table
        self.expectations = parse_expectations(
            expectations, schema, dataset_id=dataset_id, file=file, table=table
        )
        self._checks = self._row_checks(list(expectations), worker)
        self.rows = 0
        self.quarantined = 0
        self.empty_rows = 0

    def _row_checks(self, raw: list[dict], worker: bool) -> Any:
        gx_side = [e for e in self.expectations if e.level != DATASET]
        if not gx_side:
            return None
        if not any(e.key == "gx" for e in gx_side):
            from .native import NativeChecks, supported  # noqa: PLC0415

            if all(supported(e, self.schema) for e in gx_side):
                return NativeChecks(gx_side, self.on_invalid)
        params = {
            "dataset_id": self.dataset_id,
            "expectations": raw,
            "schema": self.schema,
            "on_invalid": self.on_invalid,
            "file": self.file,
            "table": self.table,
        }
        if worker and self.on_invalid != "quarantine_rows":
            from .worker import RemoteRowChecks  # noqa: PLC0415

            return RemoteRowChecks(params, _columns_read(gx_side, self.schema))
        return RowChecks(**params)

    def __enter__(self) -> BatchValidator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release great-expectations' suites, or the worker process (idempotent)."""
        if self._checks is not None:
            self._checks.close()

    def check_batch(self, batch: pa.RecordBatch | pa.Table, row_offset: int) -> pa.Array | None:
        """Run the row-level expectations on ``batch`` (rows ``row_offset+1 ...``).

        Returns the mask of rows that passed every row-level expectation (those without
        ``mostly``) when ``on_invalid == "quarantine_rows"``, else None.
        """
        n = batch.num_rows
        self.rows += n
        self.empty_rows += empty_rows(batch)
        if self._checks is None:
            return (
                pa.array(np.ones(n, dtype=bool)) if self.on_invalid == "quarantine_rows" else None
            )
        mask = self._checks.check_batch(batch, row_offset)
        if mask is not None and n:
            self.quarantined += n - pc.sum(mask).as_py()
        return mask

    def quarantine_reason(self, batch: pa.RecordBatch | pa.Table) -> pa.Array:
        """Per row of the batch just checked: the failed expectations ("; "-joined), or null."""
        if self._checks is None:
            return pa.nulls(batch.num_rows, pa.string())
        return self._checks.quarantine_reason(batch)

    # -- once, at the end -----------------------------------------------------------------
    def finish(
        self,
        parquet_files: list[str],
        *,
        now: dt.datetime | None = None,
        resolve_dataset: Callable[[str], list[str]] | None = None,
    ) -> ValidationReport:
        """Dataset-level expectations over the staged Parquet, merged with the batch results."""
        import pyarrow.parquet as pq  # noqa: PLC0415

        files = [str(f) for f in parquet_files]
        counts = [pq.ParquetFile(f).metadata.num_rows for f in files]
        now = now or self.now
        # the great-expectations half finishes (maybe in its worker) while DuckDB runs here
        gx_results = self._checks.finish(files) if self._checks else lambda: {}
        outcomes = self._dataset_outcomes(files, counts, now, resolve_dataset)
        by_index = gx_results()
        results = [
            by_index[e.index] if e.level != DATASET else outcome_result(e, outcomes[e.index])
            for e in self.expectations
        ]
        staged = int(sum(counts))
        return ValidationReport(
            dataset_id=self.dataset_id,
            results=results,
            on_invalid=self.on_invalid,
            row_count=self.rows or staged,
            quarantined_rows=self.quarantined,
            empty_rows=self.empty_rows,
            meta={
                "staged_rows": staged,
                **({"file": self.file} if self.file else {}),
                **({"table": self.table} if self.table else {}),
            },
        )

    def _dataset_outcomes(self, files, counts, now, resolve_dataset) -> dict[int, dict]:
        ds_exps = [e for e in self.expectations if e.level == DATASET]
        if not ds_exps:
            return {}
        from .dataset_level import DatasetChecks  # noqa: PLC0415 - DuckDB, only when needed

        checks = DatasetChecks(
            files, counts, now=now, resolve_dataset=resolve_dataset or self.resolve_dataset
        )
        try:
            return checks.run(ds_exps)
        finally:
            checks.close()


def outcome_result(e: Expectation, o: dict) -> ExpectationResult:
    """An outcome dict (success, result, exception, optional kwargs/meta) as a result."""
    return ExpectationResult(
        index=e.index,
        label=e.label,
        type=e.type,
        kwargs=o.get("kwargs", e.kwargs),
        level=e.level,
        success=bool(o["success"]),
        result=o["result"],
        exception=o.get("exception"),
        mostly=e.mostly,
        meta={**e.meta, **o.get("meta", {})},
    )


def _conditional(e: Expectation) -> bool:
    """A ``row_condition`` may name any column (great-expectations evaluates it on the frame)."""
    return bool(e.kwargs.get("row_condition"))


def _columns_read(exps: list[Expectation], schema: pa.Schema) -> list[str]:
    """The columns these expectations read, in schema order (all of them with a condition)."""
    if any(_conditional(e) for e in exps):
        return list(schema.names)
    return sorted({c for e in exps for c in e.columns}, key=schema.names.index)


SMALL_DISTINCT = 4096  # distinct values up to this many go in one bundle whatever their number


def _bundles(sizes: dict[int, int]) -> list[list[int]]:
    """Groups (by number of distinct values) to judge in one great-expectations run: all the
    small ones together, larger ones with others of up to twice their size (padding costs
    little then). Each bundle is in group order, so its suite is found again next batch."""
    bundles: list[list[int]] = []
    first = 0
    for g in sorted(sizes, key=lambda g: (sizes[g], g)):
        if bundles and sizes[g] <= max(SMALL_DISTINCT, 2 * first):
            bundles[-1].append(g)
        else:
            bundles.append([g])
            first = sizes[g]
    return [sorted(b) for b in bundles]


def _map_back(
    res: dict, type_name: str, col: Any, counts: pa.StructArray, n: int, quarantine: bool
) -> dict:
    """A result on distinct values (frame rows ``0 .. len(counts)-1``; later rows are padding)
    as the result on the column's ``n`` rows."""
    r = res["result"]
    k = len(counts)
    values = counts.field("values")
    weights = counts.field("counts").to_numpy(zero_copy_only=False)
    bad_u = np.asarray(
        [
            int(i)
            for i in (r.get("unexpected_index_list") or [])
            if not isinstance(i, dict) and int(i) < k
        ],
        dtype=np.int64,
    )
    # nulls are "missing" (left out of the percentage), except for not_null, whose
    # unexpected values they are: as great-expectations counts them on every row
    missing = 0
    if type_name != "expect_column_values_to_not_be_null":
        missing = int(col.null_count)
        if pa.types.is_floating(col.type):  # NaN is missing too, for pandas
            missing += int(pc.sum(pc.is_nan(col)).as_py() or 0)
    result: dict[str, Any] = {"element_count": n, "missing_count": missing}
    if "unexpected_count" in r:
        unexpected = int(weights[bad_u].sum()) if len(bad_u) else 0
        result["unexpected_count"] = unexpected
        rows = np.empty(0, dtype=np.int64)
        if unexpected:
            hit = pc.is_in(col, value_set=values.take(pa.array(bad_u)), skip_nulls=False)
            rows = np.flatnonzero(hit.to_numpy(zero_copy_only=False))
        vals = []
        if len(rows):
            sample = col.take(pa.array(rows[:SAMPLES]))
            if pa.types.is_date(sample.type):  # as on the row-by-row path (pandas Timestamps)
                sample = sample.cast(pa.timestamp("s"))
            vals = sample.to_pylist()
        result["partial_unexpected_list"] = vals
        result["partial_unexpected_index_list"] = rows[:SAMPLES].tolist()
        if quarantine:
            result["unexpected_index_list"] = rows.tolist()
    else:
        result.update(r)
    return {"success": res["success"], "result": result, "exception": res["exception"]}


def distinct_counts(batch: pa.RecordBatch | pa.Table) -> dict[str, pa.StructArray]:
    """Each column's distinct values and how often they occur (Arrow only, no pandas or
    great-expectations): what :meth:`RowChecks.check_batch` judges value by value."""
    return {name: pc.value_counts(_decoded(batch.column(name))) for name in batch.column_names}


def _decoded(col: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Dictionary columns as plain values; tz-aware timestamps as their naive UTC instant
    (see _temporal_bound)."""
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if pa.types.is_timestamp(col.type) and col.type.tz is not None:
        col = col.cast(pa.timestamp(col.type.unit))
    return col


def _to_pandas(batch: pa.RecordBatch | pa.Table, columns: list[str]) -> Any:
    """The named columns as a pandas frame (integer columns with nulls stay integer)."""
    arrays = [_decoded(batch.column(name)) for name in columns]
    df = pa.table(arrays, names=columns).to_pandas(date_as_object=False)
    for name, col in zip(columns, arrays, strict=True):
        # an integer column with nulls would become float64; keep it integer (nullable)
        if col.type in _INT_NULLABLE and col.null_count:
            dtype = getattr(_pd(), _INT_NULLABLE[col.type] + "Dtype")()
            df[name] = col.to_pandas(types_mapper={col.type: dtype}.get)
    return df


def _pd() -> Any:
    import pandas as pd  # noqa: PLC0415

    return pd


def _temporal_bound(value: str, t: pa.DataType, e: Expectation, v: RowChecks) -> Any:
    pd = _pd()
    try:
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            ts = pd.Timestamp(value)
            if getattr(t, "tz", None) is not None:  # tz-aware columns reach pandas as naive UTC
                if ts.tzinfo is None:
                    ts = ts.tz_localize(t.tz)
                return ts.tz_convert("UTC").tz_localize(None)
            if ts.tzinfo is not None:  # naive columns hold local time of the zone
                ts = ts.tz_convert("Asia/Shanghai").tz_localize(None)
            return ts
    except ValueError as err:
        raise ExpectationConfigError(
            f"bound {value!r} is not a date/time: {err}",
            index=e.index,
            key=e.key,
            dataset_id=v.dataset_id,
            file=v.file,
            hint="write ISO 8601, e.g. '2024-01-31 08:00'",
        ) from None
    raise ExpectationConfigError(
        f"bound {value!r} is text but column {e.kwargs['column']!r} is {t}",
        index=e.index,
        key=e.key,
        dataset_id=v.dataset_id,
        file=v.file,
        hint="use numbers for numeric columns",
    )


__all__ = ["BatchValidator", "RowChecks"]
