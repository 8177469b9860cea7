"""A validation run's report: one data dict, rendered as GX-style JSON, a summary and HTML.

``to_dict()`` follows great-expectations' ``ExpectationSuiteValidationResult`` layout
(``success``, ``statistics``, ``results[].expectation_config/success/result``, ``meta``), so
tools that read GX results read ours. ``partial_unexpected_rows`` (1-based row numbers in the
dataset) is our addition next to GX's ``partial_unexpected_list``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ON_INVALID = ("fail", "warn", "quarantine_rows")


SAMPLES = 20  # unexpected values (with their rows) kept per expectation


def empty_rows(batch: Any) -> int:
    """Rows of an Arrow batch with no value in any column (null, or "" in a text column)."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    if batch.num_rows == 0 or batch.num_columns == 0:
        return 0
    mask = None
    for col in batch.columns:
        empty = col.is_null()
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            empty = pc.or_kleene(empty, pc.equal(col, ""))
        mask = empty if mask is None else pc.and_kleene(mask, empty)
        if not pc.any(mask).as_py():  # the usual case: settled on the first column
            return 0
    return int(pc.sum(mask).as_py() or 0)


def passes(unexpected_percent: float, mostly: float) -> bool:
    """An expectation with ``mostly`` passes when at most ``1 - mostly`` of its (non-missing)
    values are unexpected — great-expectations' rule, with room for float rounding."""
    return unexpected_percent <= 100.0 * (1.0 - mostly) + 1e-9


@dataclass
class ExpectationResult:
    index: int
    label: str
    type: str
    kwargs: dict[str, Any]
    level: str  # row | dataset | gx_full
    success: bool
    result: dict[str, Any]
    exception: str | None = None
    mostly: float = 1.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def unexpected_count(self) -> int | None:
        v = self.result.get("unexpected_count")
        return int(v) if v is not None else None

    @property
    def score(self) -> float:
        """100 × the share of judged values that passed; 100/0 for one-number checks."""
        n = self.result.get("element_count")
        u = self.unexpected_count
        if u is None or n is None or self.exception:
            return 100.0 if self.success else 0.0
        denom = n - int(self.result.get("missing_count") or 0)
        return 100.0 if denom <= 0 else max(0.0, 100.0 * (1 - u / denom))

    def to_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {"type": self.type, "kwargs": self.kwargs}
        meta = {
            "nsdx_label": self.label,
            "nsdx_index": self.index,
            "nsdx_level": self.level,
            **self.meta,
        }
        config["meta"] = meta
        out: dict[str, Any] = {
            "expectation_config": config,
            "success": self.success,
            "result": self.result,
        }
        out["exception_info"] = {
            "raised_exception": self.exception is not None,
            "exception_message": self.exception,
        }
        return out


@dataclass
class ValidationReport:
    dataset_id: str
    results: list[ExpectationResult]
    on_invalid: str = "fail"
    row_count: int = 0
    quarantined_rows: int = 0
    empty_rows: int = 0  # rows with no value at all (every column null or "")
    meta: dict[str, Any] = field(default_factory=dict)
    # what the reader changed to read the source ({"kind", "message", ...} each), so that the
    # provider sees every repair: blank rows skipped, columns dropped, numbers re-written
    repairs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(r.success for r in self.results)

    @property
    def score(self) -> float:
        """Mean of the per-expectation scores (0–100; 100 when there is nothing to check),
        times the share of rows that hold any value: empty rows are never quality data (a
        table of nothing but empty rows scores 0, whatever its expectations say)."""
        mean = 100.0
        if self.results:
            mean = sum(r.score for r in self.results) / len(self.results)
        if self.row_count and self.empty_rows:
            mean *= max(0.0, 1 - self.empty_rows / self.row_count)
        return round(mean, 2)

    @property
    def failures_by_expectation(self) -> dict[str, int]:
        """label -> unexpected rows (1 for a failed one-number check such as row_count)."""
        return {r.label: (r.unexpected_count or 1) for r in self.results if not r.success}

    @property
    def publishable(self) -> bool:
        """May the data be published under its ``on_invalid`` policy?

        fail: only when every expectation passed; warn: always; quarantine_rows: when every
        failure was a row-level one whose bad rows were set aside (dataset-level checks ran
        on the kept rows, so they must pass).
        """
        if self.success or self.on_invalid == "warn":
            return True
        if self.on_invalid == "quarantine_rows":
            return all(
                r.success
                or (
                    r.level == "row"
                    and r.mostly >= 1
                    and not r.exception
                    and r.unexpected_count is not None
                )
                for r in self.results
            )
        return False

    def statistics(self) -> dict[str, Any]:
        n = len(self.results)
        ok = sum(r.success for r in self.results)
        return {
            "evaluated_expectations": n,
            "successful_expectations": ok,
            "unsuccessful_expectations": n - ok,
            "success_percent": 100.0 * ok / n if n else 100.0,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "statistics": self.statistics(),
            "results": [r.to_dict() for r in self.results],
            "meta": {
                "dataset_id": self.dataset_id,
                "on_invalid": self.on_invalid,
                "row_count": self.row_count,
                "quarantined_rows": self.quarantined_rows,
                "empty_rows": self.empty_rows,
                "score": self.score,
                "publishable": self.publishable,
                "repairs": self.repairs,
                **self.meta,
            },
        }

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, default=str, **kw)

    def summary(self) -> dict[str, Any]:
        """The small dict kept in the catalogue next to the dataset version."""
        return {
            "success": self.success,
            "score": self.score,
            "publishable": self.publishable,
            "on_invalid": self.on_invalid,
            "row_count": self.row_count,
            "quarantined_rows": self.quarantined_rows,
            "empty_rows": self.empty_rows,
            **self.statistics(),
            "failures_by_expectation": self.failures_by_expectation,
            **({"repairs": [r["message"] for r in self.repairs]} if self.repairs else {}),
        }

    def to_html(self) -> str:
        """A self-contained page (inline CSS, no scripts) a provider can open or be mailed."""
        return _template().render(report=self, data=self.to_dict(), stats=self.statistics())


@lru_cache(maxsize=1)
def _template():
    import jinja2  # noqa: PLC0415 — only needed for HTML

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        bytecode_cache=_bytecode_cache(jinja2),
    )
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, ensure_ascii=False, default=str)
    return env.get_template("report.html")


def _bytecode_cache(jinja2: Any) -> Any:
    """The template compiled once per user, not once per ingest (~0.1 s of CPU each time):
    jinja2's own file cache in the user's private temporary folder (mode 700, owner
    checked; written atomically; an entry is used only while the template's source has
    the same checksum). No cache when that folder cannot be made; failing to write an
    entry only means compiling again next time."""

    class Cache(jinja2.FileSystemBytecodeCache):
        def dump_bytecode(self, bucket: Any) -> None:
            try:
                super().dump_bytecode(bucket)
            except OSError:
                pass

    try:
        return Cache()
    except (OSError, RuntimeError):  # no writable private temporary folder
        return None


# -- a report as it may be served (the portal) ----------------------------------------------
SAMPLE_KEYS = (
    "partial_unexpected_list",
    "partial_unexpected_rows",
    "partial_unexpected_counts",
    "unexpected_list",
    "unexpected_index_list",
    "partial_unexpected_index_list",
)
MAX_SHOWN_RESULTS = 1000
MAX_SHOWN_CHARS = 200


def shown_report(
    data: dict[str, Any],
    pii: dict[str, str],
    key: bytes | None,
    *,
    numbers: bool,
    max_chars: int = MAX_SHOWN_CHARS,
) -> dict[str, Any]:
    """A report dict (:meth:`ValidationReport.to_dict` layout) made safe to serve.

    With ``key`` None every sample value is removed (counts and verdicts stay: the copy
    published with a version). With the masking key, the samples the provider may see are
    kept, each one masked first (:func:`validation.pii.mask_sample`: a value of a column in
    ``pii`` — ``{column: kind}`` — becomes its publishing token; phone, ID and plate numbers
    in any other text become tokens too) and then cut to ``max_chars`` characters; at most
    :data:`SAMPLES` per expectation, row numbers as whole numbers. Observed values and
    exception messages are masked and cut the same way; other result fields are numbers.

    ``numbers``: may the viewer read the data (``catalogue.access.may_read``)? A numeric
    observed value is an aggregate of the data (a mean, a maximum, a count of distinct
    values): without ``numbers`` it is removed too, whoever else may see the report."""
    from .pii import mask_sample  # noqa: PLC0415 - pyarrow only when a report is served

    def cut(v: Any, kind: str | None = None) -> Any:
        if v is None or isinstance(v, bool | int | float):
            return v
        s = mask_sample(v, kind, key) if key is not None else None
        if s is None:
            return None
        return s if len(s) <= max_chars else s[: max_chars - 1] + "…"

    out = {k: v for k, v in data.items() if k != "results"}
    results = []
    for r in (data.get("results") or [])[:MAX_SHOWN_RESULTS]:
        if not isinstance(r, dict):
            continue
        cfg = r.get("expectation_config") or {}
        column = (cfg.get("kwargs") or {}).get("column")
        kind = pii.get(column) if isinstance(column, str) else None
        src = r.get("result") or {}
        res: dict[str, Any] = {}
        for k, v in src.items():
            if k in SAMPLE_KEYS:
                continue
            if k == "observed_value":
                if not numbers:
                    res[k] = None
                else:
                    res[k] = cut(v, kind) if key is not None or isinstance(v, int | float) else None
            elif isinstance(v, bool | int | float) or v is None:
                res[k] = v
        if key is not None:
            values = list(src.get("partial_unexpected_list") or [])[:SAMPLES]
            rows = [n for n in src.get("partial_unexpected_rows") or [] if isinstance(n, int)]
            res["partial_unexpected_list"] = [cut(v, kind) for v in values]
            res["partial_unexpected_rows"] = rows[: len(values)]
            res["partial_unexpected_counts"] = [
                {"value": cut(c.get("value"), kind), "count": c.get("count")}
                for c in list(src.get("partial_unexpected_counts") or [])[:SAMPLES]
                if isinstance(c, dict) and isinstance(c.get("count"), int)
            ]
        exc = dict(r.get("exception_info") or {})
        if exc.get("exception_message"):
            exc["exception_message"] = cut(str(exc["exception_message"])) if key else None
        results.append({**r, "result": res, "exception_info": exc})
    out["results"] = results
    return out


def counted_result(
    etype: str, element_count: int, missing_count: int, unexpected_count: int, samples: list
) -> tuple[dict[str, Any], float]:
    """great-expectations' result dict of a row-level check from its counts (and the
    percentage of unexpected values among the non-missing ones): written once, for the checks
    judged by great-expectations' worker and for those judged with Arrow."""
    nonmissing = element_count - missing_count
    pct = 100.0 * unexpected_count / nonmissing if nonmissing else 0.0
    result: dict[str, Any] = {
        "element_count": element_count,
        "unexpected_count": unexpected_count,
        "unexpected_percent": pct,
        "partial_unexpected_list": [v for v, _ in samples],
        "partial_unexpected_rows": [r for _, r in samples],
    }
    if etype != "expect_column_values_to_not_be_null":
        result["missing_count"] = missing_count
        result["missing_percent"] = 100.0 * missing_count / element_count if element_count else 0.0
    return result, pct


def quarantine_reasons(n: int, failed: dict) -> pa.Array:
    """Per row of a batch of ``n`` rows: the labels of the checks it failed ("; "-joined), or
    null; ``failed`` maps a label to the failing row positions. Only failed rows get a Python
    string. Written once for the checks judged by great-expectations and those judged with
    Arrow."""
    if not failed:
        return pa.nulls(n, pa.string())
    bad = np.unique(np.concatenate(list(failed.values())))
    reasons: dict[int, list[str]] = {int(i): [] for i in bad}
    for label, idx in failed.items():
        for i in idx.tolist():
            reasons[int(i)].append(label)
    mask = np.zeros(n, dtype=bool)
    mask[bad] = True
    texts = pa.array(["; ".join(reasons[int(i)]) for i in bad], pa.string())
    return pc.replace_with_mask(pa.nulls(n, pa.string()), pa.array(mask), texts)
