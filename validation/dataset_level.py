"""Dataset-level expectations computed once with DuckDB over the staged Parquet files.

Uniqueness, row count, min/max/mean, distinct count, freshness and referential checks need
every row at once; great-expectations' pandas engine would need the whole dataset in memory,
and its SQL datasource over duckdb-engine failed in a quick try (see the design brief). DuckDB
streams the Parquet files with bounded memory, and the results are written in the same
great-expectations result format as the row-level ones.

All simple aggregates (row count, min, max, mean, distinct, freshness) share one scan.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

from . import duck
from .gx import jsonable
from .report import SAMPLES, passes
from .shorthand import Expectation

#: naive timestamps in nsdx data are local time of the zone (China Standard Time)
NAIVE_TIMEZONE = ZoneInfo("Asia/Shanghai")
# DuckDB takes up to 80 % of the machine's memory by default; grouping a big dataset (unique)
# would. Past this limit it spills to a temporary folder instead, so peak memory stays flat
# whatever the dataset size.
MEMORY_LIMIT = "256MB"

Outcome = dict[str, Any]  # {"success", "result", "exception", "kwargs" (optional override)}


def q(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _files_cte(with_rows: bool) -> str:
    if not with_rows:
        return "src AS (SELECT * FROM read_parquet($files))"
    # global row number: rows of earlier files + row number inside the file + 1
    return (
        "src AS (SELECT p.*, p.file_row_number + o.off + 1 AS __nsdx_row "
        "FROM read_parquet($files, filename='__nsdx_file', file_row_number=true) AS p "
        "JOIN offs o ON p.__nsdx_file = o.f)"
    )


def _coerce(bound: Any, observed: Any) -> Any:
    """A bound from YAML (number or ISO string) in the type of the observed value."""
    if bound is None or observed is None:
        return bound
    if isinstance(observed, datetime) and not isinstance(bound, datetime):
        b = datetime.fromisoformat(str(bound))
        if observed.tzinfo is not None and b.tzinfo is None:
            b = b.replace(tzinfo=NAIVE_TIMEZONE)
        elif observed.tzinfo is None and b.tzinfo is not None:
            b = b.astimezone(NAIVE_TIMEZONE).replace(tzinfo=None)
        return b
    if isinstance(observed, date) and not isinstance(observed, datetime):
        return date.fromisoformat(str(bound)[:10])
    if isinstance(observed, time):
        return time.fromisoformat(str(bound))
    return bound


def _within(observed: Any, lo: Any, hi: Any, strict_min: bool, strict_max: bool) -> bool:
    if observed is None:
        return False
    lo, hi = _coerce(lo, observed), _coerce(hi, observed)
    try:
        if lo is not None and (observed <= lo if strict_min else observed < lo):
            return False
        if hi is not None and (observed >= hi if strict_max else observed > hi):
            return False
    except TypeError:
        return False
    return True


def _map_result(total: int, missing: int, unexpected: int, samples: list) -> dict[str, Any]:
    nonmissing = total - missing
    pct = 100.0 * unexpected / nonmissing if nonmissing else 0.0
    return {
        "element_count": total,
        "missing_count": missing,
        "missing_percent": 100.0 * missing / total if total else 0.0,
        "unexpected_count": unexpected,
        "unexpected_percent": pct,
        "unexpected_percent_total": 100.0 * unexpected / total if total else 0.0,
        "unexpected_percent_nonmissing": pct,
        "partial_unexpected_list": [jsonable(v) for v, _ in samples],
        "partial_unexpected_rows": [int(r) for _, r in samples],
    }


def _map_success(exp: Expectation, result: dict[str, Any]) -> bool:
    return passes(result["unexpected_percent"], exp.mostly)


class DatasetChecks:
    """Run the dataset-level expectations of one dataset over its staged Parquet files."""

    def __init__(
        self,
        files: Sequence[str],
        row_counts: Sequence[int],
        *,
        now: datetime | None = None,
        resolve_dataset: Callable[[str], list[str]] | None = None,
    ) -> None:
        self.files = [str(f) for f in files]
        self.total = int(sum(row_counts))
        self.now = now or datetime.now(UTC)
        if self.now.tzinfo is None:
            self.now = self.now.replace(tzinfo=NAIVE_TIMEZONE)
        self.resolve_dataset = resolve_dataset
        self._spill = tempfile.mkdtemp(prefix="nsdx-duckdb-")
        self.con = duck.connect(
            config={
                "memory_limit": MEMORY_LIMIT,
                "temp_directory": self._spill,
                "preserve_insertion_order": False,
            }
        )
        offs, acc = [], 0
        for f, n in zip(self.files, row_counts, strict=True):
            offs.append((f, acc))
            acc += int(n)
        self.con.execute("CREATE TEMP TABLE offs (f VARCHAR, off BIGINT)")
        if offs:
            self.con.executemany("INSERT INTO offs VALUES (?, ?)", offs)

    def close(self) -> None:
        self.con.close()
        shutil.rmtree(self._spill, ignore_errors=True)

    def _sql(self, body: str, *, with_rows: bool = False, params: dict | None = None) -> list:
        sql = f"WITH {_files_cte(with_rows)} {body}"
        return self.con.execute(sql, {"files": self.files, **(params or {})}).fetchall()

    def run(self, exps: list[Expectation]) -> dict[int, Outcome]:
        """One outcome per expectation index."""
        out: dict[int, Outcome] = {}
        aggregates = [
            e for e in exps if e.key in ("row_count", "min", "max", "mean", "distinct", "freshness")
        ]
        if aggregates:
            out.update(self._aggregates(aggregates))
        for e in exps:
            try:
                if e.key == "unique":
                    out[e.index] = self._unique(e)
                elif e.key == "in_dataset":
                    out[e.index] = self._in_dataset(e)
            except duckdb.Error as err:
                out[e.index] = {"success": False, "result": {}, "exception": f"DuckDB: {err}"}
        return out

    # -- one scan for every simple aggregate ---------------------------------------------
    def _aggregates(self, exps: list[Expectation]) -> dict[int, Outcome]:
        cols = ["count(*)"]
        for e in exps:
            c = q(e.kwargs["column"]) if "column" in e.kwargs else None
            cols.append(
                {
                    "row_count": "count(*)",
                    "min": f"min({c})",
                    "max": f"max({c})",
                    "freshness": f"max({c})",
                    "mean": f"avg({c})",
                    "distinct": f"count(DISTINCT {c})",
                }[e.key]
            )
        if not self.files:
            row = [0] + [0 if e.key in ("row_count", "distinct") else None for e in exps]
        else:
            try:
                row = list(self._sql("SELECT " + ", ".join(cols) + " FROM src")[0])
            except duckdb.Error as err:
                return {
                    e.index: {"success": False, "result": {}, "exception": f"DuckDB: {err}"}
                    for e in exps
                }
        out: dict[int, Outcome] = {}
        for e, observed in zip(exps, row[1:], strict=True):
            kw = e.kwargs
            if e.key == "freshness":
                out[e.index] = self._freshness(e, observed)
                continue
            ok = _within(
                observed,
                kw.get("min_value"),
                kw.get("max_value"),
                bool(kw.get("strict_min")),
                bool(kw.get("strict_max")),
            )
            result: dict[str, Any] = {"observed_value": jsonable(observed)}
            if e.key != "row_count":
                result["element_count"] = row[0]
            out[e.index] = {"success": ok, "result": result, "exception": None}
        return out

    def _freshness(self, e: Expectation, observed: Any) -> Outcome:
        age = float(e.meta["max_age_days"])
        threshold: Any = self.now - timedelta(days=age)
        if isinstance(observed, datetime) and observed.tzinfo is None:
            threshold = threshold.astimezone(NAIVE_TIMEZONE).replace(tzinfo=None)
        elif isinstance(observed, date) and not isinstance(observed, datetime):
            threshold = threshold.astimezone(NAIVE_TIMEZONE).date()
        ok = observed is not None and observed >= threshold
        result: dict[str, Any] = {"observed_value": jsonable(observed), "element_count": self.total}
        if observed is not None:
            newest = observed if isinstance(observed, datetime) else None
            if newest is not None:
                now = (
                    self.now
                    if newest.tzinfo
                    else self.now.astimezone(NAIVE_TIMEZONE).replace(tzinfo=None)
                )
                result["details"] = {"age_days": round((now - newest).total_seconds() / 86400, 3)}
        kwargs = dict(e.kwargs, min_value=jsonable(threshold))
        msg = None if observed is not None else "the column has no values"
        return {
            "success": bool(ok),
            "result": result,
            "exception": msg,
            "kwargs": kwargs,
            "meta": {"now": self.now.isoformat()},
        }

    # -- uniqueness --------------------------------------------------------------------
    def _unique(self, e: Expectation) -> Outcome:
        cols = e.kwargs.get("column_list") or [e.kwargs["column"]]
        if not self.files:
            return {"success": True, "result": _map_result(0, 0, 0, []), "exception": None}
        qc = [q(c) for c in cols]
        # GX semantics: single column ignores nulls; compound ignores rows where all are null
        present = " OR ".join(f"{c} IS NOT NULL" for c in qc)
        on = " AND ".join(f"s.{c} IS NOT DISTINCT FROM d.{c}" for c in qc)
        sel = ", ".join(qc)
        missing = self._sql(f"SELECT count(*) FROM src WHERE NOT ({present})")[0][0]
        dup_cte = (
            f", dups AS (SELECT {sel}, count(*) AS n FROM src WHERE {present} "
            f"GROUP BY ALL HAVING count(*) > 1)"
        )
        unexpected = self._sql(f"{dup_cte} SELECT coalesce(sum(n), 0) FROM dups")[0][0]
        samples: list = []
        if unexpected:
            rows = self._sql(
                f"{dup_cte} SELECT {', '.join('s.' + c for c in qc)}, s.__nsdx_row FROM src s "
                f"SEMI JOIN dups d ON {on} ORDER BY s.__nsdx_row LIMIT {SAMPLES}",
                with_rows=True,
            )
            for r in rows:
                value = r[0] if len(cols) == 1 else dict(zip(cols, r[:-1], strict=True))
                samples.append((value, r[-1]))
        result = _map_result(self.total, int(missing), int(unexpected), samples)
        return {"success": _map_success(e, result), "result": result, "exception": None}

    # -- referential -------------------------------------------------------------------
    def _in_dataset(self, e: Expectation) -> Outcome:
        other, other_col = e.kwargs["dataset"], e.kwargs["dataset_column"]
        if self.resolve_dataset is None:
            return {
                "success": False,
                "result": {},
                "exception": (
                    f"cannot check against dataset {other!r}: no dataset resolver was given to the validator"
                ),
            }
        try:
            resolved = self.resolve_dataset(other) or []
            other_files = list(resolved)
            configure = getattr(resolved, "configure", None)
            if other_files and configure is not None:
                configure(self.con)  # e.g. S3: httpfs from its package, the store's secret
        except Exception as err:  # the resolver is the pipeline's; report, don't crash
            other_files, why = [], f"{type(err).__name__}: {err}"
        else:
            why = "it is not published (no Parquet files)"
        if not other_files:
            return {
                "success": False,
                "result": {},
                "exception": (
                    f"cannot check against dataset {other!r}: {why}; publish {other!r} first "
                    f"or remove this expectation"
                ),
            }
        c = q(e.kwargs["column"])
        if not self.files:
            return {"success": True, "result": _map_result(0, 0, 0, []), "exception": None}
        missing = self._sql(f"SELECT count(*) FROM src WHERE {c} IS NULL")[0][0]
        params = {"other": [str(f) for f in other_files]}
        for cast in (False, True):
            lhs = f"CAST(s.{c} AS VARCHAR)" if cast else f"s.{c}"
            rhs = f"CAST({q(other_col)} AS VARCHAR)" if cast else q(other_col)
            cte = f", ref AS (SELECT DISTINCT {rhs} AS v FROM read_parquet($other))"
            body = f"FROM src s ANTI JOIN ref ON {lhs} = ref.v WHERE s.{c} IS NOT NULL"
            try:
                unexpected = self._sql(f"{cte} SELECT count(*) {body}", params=params)[0][0]
                rows = (
                    self._sql(
                        f"{cte} SELECT s.{c}, s.__nsdx_row {body} ORDER BY s.__nsdx_row LIMIT {SAMPLES}",
                        with_rows=True,
                        params=params,
                    )
                    if unexpected
                    else []
                )
                break
            except duckdb.BinderException as err:
                if "referenced column" in str(err).lower() or "not found" in str(err).lower():
                    return {
                        "success": False,
                        "result": {},
                        "exception": (f"dataset {other!r} has no column {other_col!r}: {err}"),
                    }
            except (duckdb.IOException, duckdb.HTTPException) as err:  # its storage failed
                return {  # the error names storage locations: only its kind is reported
                    "success": False,
                    "result": {},
                    "exception": (
                        f"cannot check against dataset {other!r}: its data could not be read "
                        f"({type(err).__name__}); try again, or ask the operator to check the "
                        "object store"
                    ),
                }
                if cast:
                    raise
        result = _map_result(
            self.total, int(missing), int(unexpected), [(r[0], r[1]) for r in rows]
        )
        return {"success": _map_success(e, result), "result": result, "exception": None}
