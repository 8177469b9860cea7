"""nsdx — the open dataset registry and data-exchange catalogue of Nansha, Guangzhou.

The application shell: settings, the Python API (:class:`Nsdx`), the CLI and the web app
assembly. The domain lives in the packages ``catalogue``, ``ingest``, ``validation`` and
``exchange``.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Nsdx":
        from .core import Nsdx

        return Nsdx
    raise AttributeError(name)


__all__ = ["Nsdx", "__version__"]
