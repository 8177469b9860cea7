"""The one module that touches great-expectations.

great-expectations takes seconds to import, so it is imported lazily, the first time a suite
is built. :class:`GxSuite` holds one ephemeral data context, one pandas dataframe asset and one
``ExpectationSuite`` built once; :meth:`GxSuite.validate` runs it on one pandas DataFrame (one
record batch) and returns plain dicts. Nothing else in nsdx imports great_expectations.
"""

from __future__ import annotations

import itertools
import logging
import threading
from typing import Any

_counter = itertools.count()
# great-expectations' context is not documented as thread-safe; the server may validate an
# upload while the CLI-driven pipeline runs in another thread, so every use is serialised.
_lock = threading.RLock()
_gx_module: Any = None


def _gx() -> Any:
    global _gx_module
    if _gx_module is None:
        logging.getLogger("great_expectations").setLevel(logging.ERROR)
        import great_expectations  # noqa: PLC0415 — slow import, done on first use

        _gx_module = great_expectations
    return _gx_module


def _class_name(type_name: str) -> str:
    return "".join(part.capitalize() for part in type_name.split("_"))


def expectation_class(type_name: str) -> type:
    """The great-expectations class for ``expect_...``; KeyError when there is none."""
    gx = _gx()
    cls = getattr(gx.expectations, _class_name(type_name), None)
    if cls is None or not isinstance(cls, type):
        raise KeyError(type_name)
    return cls


def is_row_level(type_name: str) -> bool:
    """True for map expectations (judged value by value or row by row: safe to run per batch)."""
    from great_expectations.expectations.expectation import (  # noqa: PLC0415
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )

    cls = expectation_class(type_name)
    return issubclass(
        cls, ColumnMapExpectation | ColumnPairMapExpectation | MulticolumnMapExpectation
    )


def build_expectation(type_name: str, kwargs: dict[str, Any]) -> Any:
    """Instantiate (and so check) a great-expectations expectation; ValueError with GX's reason."""
    try:
        cls = expectation_class(type_name)
    except KeyError:
        raise ValueError(f"great-expectations has no expectation {type_name!r}") from None
    try:
        return cls(**kwargs)
    except Exception as e:  # pydantic ValidationError, TypeError ...
        msg = str(e).strip().splitlines()
        raise ValueError(f"{type_name}: " + " ".join(m.strip() for m in msg[:6])) from None


def jsonable(value: Any) -> Any:
    """numpy / pandas scalars, NA and timestamps made JSON-serialisable."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if value != value else value
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    try:
        import pandas as pd  # noqa: PLC0415

        if value is pd.NA or value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalar
        return jsonable(value.item())
    return str(value)


_context_obj: Any = None


def warm() -> None:
    """Import great-expectations and build the context now (a worker does it at start)."""
    _context()


def _context() -> Any:
    """One ephemeral data context per process (each one creates a temporary docs folder)."""
    global _context_obj
    if _context_obj is None:
        from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: PLC0415

        ctx = _gx().get_context(mode="ephemeral")
        try:  # the tqdm bars would print "Calculating Metrics" for every batch
            ctx.variables.progress_bars = ProgressBarsConfig(
                globally=False, metric_calculations=False
            )
        except Exception:  # pragma: no cover — cosmetic only
            pass
        _context_obj = ctx
    return _context_obj


class GxSuite:
    """An ``ExpectationSuite`` bound to a pandas dataframe asset, built once, run per batch.

    ``items`` is a list of ``(type_name, kwargs)``; results come back in the same order.
    """

    def __init__(self, name: str, items: list[tuple[str, dict[str, Any]]]) -> None:
        gx = _gx()
        with _lock:
            self._build(gx, name, items)

    def _build(self, gx: Any, name: str, items: list[tuple[str, dict[str, Any]]]) -> None:
        self.context = _context()
        uid = next(_counter)
        self._datasource = f"nsdx_{uid}"
        asset = self.context.data_sources.add_pandas(self._datasource).add_dataframe_asset("batch")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("whole")
        self.suite = self.context.suites.add(gx.ExpectationSuite(name=f"{name}_{uid}"))
        self.ids: list[str] = []
        for type_name, kwargs in items:
            added = self.suite.add_expectation(build_expectation(type_name, kwargs))
            self.ids.append(added.id)

    def close(self) -> None:
        """Forget the datasource and suite (the context is shared by the whole process)."""
        with _lock:
            self._close()

    def _close(self) -> None:
        for remove in (
            lambda: self.context.data_sources.delete(self._datasource),
            lambda: self.context.suites.delete(self.suite.name),
        ):
            try:
                remove()
            except Exception:  # pragma: no cover — already gone
                pass

    def validate(self, df: Any, *, complete: bool = False) -> list[dict[str, Any]]:
        """Run the suite on ``df``; one dict per expectation with success, result, exception.

        ``complete`` asks for every unexpected index (needed to quarantine rows); otherwise
        the SUMMARY format (counts + 20 samples with their index) is enough and cheaper.
        """
        if complete:
            fmt: Any = {
                "result_format": "COMPLETE",
                "return_unexpected_index_query": False,
                "partial_unexpected_count": 20,
            }
        else:
            fmt = {"result_format": "SUMMARY", "partial_unexpected_count": 20}
        with _lock:
            batch = self.batch_definition.get_batch(batch_parameters={"dataframe": df})
            run = batch.validate(self.suite, result_format=fmt)
        by_id = {r.expectation_config.id: r for r in run.results}
        out = []
        for eid in self.ids:
            r = by_id.get(eid)
            if r is None:  # pragma: no cover — defensive
                out.append({"success": False, "result": {}, "exception": "no result"})
                continue
            exc = _exception_message(r.exception_info or {})
            out.append(
                {"success": bool(r.success), "result": dict(r.result or {}), "exception": exc}
            )
        return out


def _exception_message(info: dict) -> str | None:
    """GX puts the error either at the top level or per metric (one level down)."""
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "great-expectations raised an exception")
    for v in info.values():
        if isinstance(v, dict) and v.get("raised_exception"):
            return str(v.get("exception_message") or "great-expectations raised an exception")
    return None
