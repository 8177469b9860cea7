"""The one module that touches great-expectations.

great-expectations takes seconds to import, so it is imported lazily, the first time a suite
is built. :class:`GxSuite` holds one ephemeral data context, one pandas dataframe asset and one
``ExpectationSuite`` built once; :meth:`GxSuite.validate` runs it on one pandas DataFrame (one
record batch) and returns plain dicts. Nothing else in nsdx imports great_expectations.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import itertools
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from .report import SAMPLES

_counter = itertools.count()
# great-expectations' context is not documented as thread-safe; the server may validate an
# upload while the CLI-driven pipeline runs in another thread, so every use is serialised.
_lock = threading.RLock()
_gx_module: Any = None


# Imported by great-expectations at start-up but used only by expectations and features nsdx
# does not run on its hot path (distribution tests, charts in Data Docs): loaded lazily they
# cost nothing until something touches them, and they then load as usual.
LAZY_MODULES = ("scipy.stats", "altair")
# Optional dependencies of great-expectations (SQL and S3 datasources) that the validation
# worker never uses — it validates pandas frames and local Parquet files: during the import
# they look absent, as great-expectations supports. Together this takes ~40% off the import.
# Used by the validation worker only (see warm).
ABSENT_MODULES = ("sqlalchemy", "boto3", "botocore")


class _LeanFinder(importlib.abc.MetaPathFinder):
    """Finds ``lazy`` as usual but wraps their loader in :class:`importlib.util.LazyLoader`
    (the module object is created at import and executed on first attribute access), and
    reports ``absent`` packages (and their submodules) as not installed."""

    def __init__(self, lazy: tuple[str, ...], absent: tuple[str, ...]) -> None:
        self.lazy = frozenset(lazy)
        self.absent = frozenset(absent)

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name.partition(".")[0] in self.absent:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        if name not in self.lazy:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


@contextmanager
def lean_imports(
    lazy: tuple[str, ...] = LAZY_MODULES, absent: tuple[str, ...] = ABSENT_MODULES
) -> Iterator[None]:
    """Within the block, importing one of ``lazy`` (not yet imported) defers executing it to
    its first use, and ``absent`` ones fail as if not installed. Only imports inside the block
    are affected: the finder is removed after (modules imported before are not affected)."""
    finder = _LeanFinder(lazy, absent)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def _gx(defer_unused: bool = False) -> Any:
    global _gx_module
    if _gx_module is None:
        logging.getLogger("great_expectations").setLevel(logging.ERROR)
        with lean_imports() if defer_unused else nullcontext():
            import great_expectations  # noqa: PLC0415 — slow import, done on first use

        _gx_module = great_expectations
    return _gx_module


_classes: dict[str, type] | None = None


def expectation_class(type_name: str) -> type:
    """The great-expectations class for ``expect_...``; KeyError when there is none.

    Matched without regard to case or underscores: the snake-case names drop the capitals
    of acronyms (``expect_column_kl_divergence_...`` is ``ExpectColumnKLDivergence...``)."""
    global _classes
    gx = _gx()
    if _classes is None:
        _classes = {
            name.lower(): cls
            for name in dir(gx.expectations)
            if name.startswith("Expect") and isinstance(cls := getattr(gx.expectations, name), type)
        }
    cls = _classes.get(type_name.replace("_", "").lower())
    if cls is None:
        raise KeyError(type_name)
    return cls


def is_row_level(type_name: str) -> bool:
    """True for map expectations (judged value by value or row by row: safe to run per batch)."""
    cls = expectation_class(type_name)  # first: the import (see warm)
    from great_expectations.expectations.expectation import (  # noqa: PLC0415
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )

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
    pd = sys.modules.get("pandas")  # not imported: the value is no pandas NA
    if pd is not None and (value is pd.NA or value is pd.NaT):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalar
        return jsonable(value.item())
    return str(value)


_context_obj: Any = None


def warm(*, defer_unused: bool = False) -> None:
    """Import great-expectations and build the context now (a worker does it at start).

    ``defer_unused`` imports it with :func:`lean_imports` — only where one thread uses
    great-expectations afterwards (the worker process): Python 3.11's lazy modules are not
    safe to load from two threads at once, and the server validates in threads."""
    _gx(defer_unused)
    _context()


def _context() -> Any:
    """One ephemeral data context per process (each one creates a temporary docs folder)."""
    global _context_obj
    if _context_obj is None:
        gx = _gx()  # first: the import (see warm)
        from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: PLC0415

        ctx = gx.get_context(mode="ephemeral")
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
                "partial_unexpected_count": SAMPLES,
            }
        else:
            fmt = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLES}
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
