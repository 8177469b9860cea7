"""nsdx — the open dataset registry and data-exchange catalogue of Nansha, Guangzhou.

The application shell: settings, the Python API (:class:`Nsdx`), the CLI and the web app
assembly. The domain lives in the packages ``catalogue``, ``ingest``, ``validation`` and
``exchange``.
"""

__version__ = "0.1.0"


def connect(url: str | None = None, *, token: str | None = None):
    """A DuckDB connection with a view for every dataset the caller may read: this
    deployment's (no ``url``) or a portal's over HTTP (``url``, ``token``). See
    :mod:`nsdx.remote`."""
    from .remote import connect as _connect

    return _connect(url, token=token)


def __getattr__(name: str):
    if name == "Nsdx":
        from .core import Nsdx

        return Nsdx
    raise AttributeError(name)


__all__ = ["Nsdx", "__version__", "connect"]
