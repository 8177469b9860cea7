"""pyarrow without pandas where pandas is not used.

Every time pyarrow converts a Python value (``pa.scalar(False)``, ``pc.equal(col, "")``,
``pc.fill_null(mask, False)``) it makes sure pandas is imported, to recognise pandas objects
(its C++ side until the import succeeds, its Cython shim once): ~0.2 s of CPU, GIL-bound, in
every ingest, which never hands pyarrow a pandas object unless great-expectations runs in the
process. Inside :func:`without_pandas`, pyarrow cannot import pandas *in the calling thread*
(an ``import`` in Python code still can, and other threads are not concerned), so it goes on
without it; and a hook on pandas' import makes
pyarrow look again the moment anything does import pandas (great-expectations, ``to_pandas``),
so from then on pandas objects are recognised (``pa.array(series)`` maps NaN to null,
``pa.scalar(pd.Timestamp)``...) exactly as without this module. Nothing changes when pandas is
already imported, or when pyarrow's private pandas shim is not the one this was written for.
"""

from __future__ import annotations

import dis
import importlib
import importlib.abc
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import CodeType, FrameType
from typing import Any

_IMPORT_NAME = dis.opmap["IMPORT_NAME"]
_EXTENDED_ARG = dis.opmap["EXTENDED_ARG"]
_lock = threading.Lock()
_installed = False
_blocked: dict[int, int] = {}  # thread id -> depth of without_pandas() blocks


def _shim() -> Any | None:
    """pyarrow's lazily-importing pandas shim (private), if it looks as expected."""
    lib = sys.modules.get("pyarrow.lib")
    api = getattr(lib, "_pandas_api", None)
    kind = type(api)  # on the type: looking up the property on the shim would import pandas
    if api is None or not hasattr(kind, "is_array_like") or not hasattr(kind, "have_pandas"):
        return None
    return api


def _tell_pyarrow() -> None:
    """pandas is imported: have pyarrow's shim import it (from sys.modules) and use it."""
    api = _shim()
    if api is not None:
        try:
            api.is_array_like(None)  # raise_=True: imports pandas if the shim had found none
        except Exception:  # noqa: BLE001, S110 - pyarrow retries on its own next use
            pass


class _Finder(importlib.abc.MetaPathFinder):
    """Put in ``sys.meta_path`` once and never taken out (the import system walks that list
    while other threads import: taking an entry out could make one of them skip a finder).

    * In a thread inside :func:`without_pandas`, pandas cannot be found by pyarrow: ``import
      pandas`` or ``importlib.import_module("pandas")`` in Python code (great-expectations)
      still finds it.
    * The first import of pandas goes through :class:`_Loader` (a post-import hook)."""

    def __init__(self) -> None:
        self.hooked = False

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201
        if name != "pandas":  # its submodules: once pandas itself is being imported
            return None
        if _blocked.get(threading.get_ident()) and not _python_import(sys._getframe(1)):
            raise ImportError(f"{name} is not imported for pyarrow here (nsdx)", name=name)
        with _lock:
            if self.hooked:
                return None
            self.hooked = True
        spec = None
        for finder in list(sys.meta_path):  # the other finders, as the import system asks
            find = getattr(finder, "find_spec", None)
            if find is None or finder is self:
                continue
            if (spec := find(name, path, target)) is not None:
                break
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


def _python_import(frame: FrameType | None) -> bool:
    """Is this import of pandas asked for by Python code — an ``import pandas`` statement
    or ``importlib.import_module("pandas")`` — rather than by an extension module in C
    (pyarrow's probe, also when ``import pyarrow.dataset`` runs its module's C code)?"""
    while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
        frame = frame.f_back
    if frame is None:
        return False
    code = frame.f_code
    if code.co_filename == importlib.__file__:
        return str(frame.f_locals.get("name", "")).partition(".")[0] == "pandas"
    return (_imported_name(code, frame.f_lasti) or "").partition(".")[0] == "pandas"


def _imported_name(code: CodeType, lasti: int) -> str | None:
    """The module an ``IMPORT_NAME`` instruction at ``lasti`` imports (None if it is not
    one)."""
    co = code.co_code
    if not 0 <= lasti < len(co) - 1 or co[lasti] != _IMPORT_NAME:
        return None
    arg, shift, i = co[lasti + 1], 8, lasti - 2
    while i >= 0 and co[i] == _EXTENDED_ARG:
        arg |= co[i + 1] << shift
        shift, i = shift + 8, i - 2
    return code.co_names[arg] if arg < len(code.co_names) else None


class _Loader(importlib.abc.Loader):
    """pandas' own loader, and pyarrow told once pandas' module has run."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec):  # noqa: ANN001, ANN201
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:  # noqa: ANN001
        try:
            self.loader.exec_module(module)
        finally:  # the module's spec names its real loader again
            module.__loader__ = self.loader
            if module.__spec__ is not None:
                module.__spec__.loader = self.loader
        _tell_pyarrow()


def _install() -> None:
    global _installed  # noqa: PLW0603
    with _lock:
        if not _installed:
            _installed = True
            sys.meta_path.insert(0, _Finder())


@contextmanager
def without_pandas() -> Iterator[None]:
    """While the block runs, this thread's pyarrow conversions find no pandas (see the
    module); a no-op when pandas is already imported. In the block, code that has pyarrow
    make pandas objects (``to_pandas``) imports pandas first, with an ``import``."""
    import pyarrow  # noqa: F401, PLC0415 - the shim lives in pyarrow.lib

    if "pandas" in sys.modules or _shim() is None:
        yield
        return
    _install()
    me = threading.get_ident()
    _blocked[me] = _blocked.get(me, 0) + 1
    try:
        yield
    finally:
        if _blocked[me] == 1:
            del _blocked[me]
        else:
            _blocked[me] -= 1
        if "pandas" in sys.modules:  # imported meanwhile by another thread
            _tell_pyarrow()
