"""How ``nsdx serve`` runs the HTTP server (uvicorn), with the bounds a public server needs.

* **Header-read timeout** (``NSDX_HEADER_TIMEOUT``, 10 s): a connection that has not sent a
  whole request head within this time after it opened — or after its previous response —
  is closed. uvicorn alone waits for ever (300 idle sockets stayed open; a slow sender
  holds its connection as long as it likes).
* **Idle keep-alive** (``NSDX_KEEP_ALIVE``, 5 s): an idle kept-alive connection is closed.
* **Connections** (``NSDX_MAX_CONNECTIONS``, 1000 per server process): past it, new
  requests get 503 at once instead of queueing without bound.
* **Graceful shutdown** (``NSDX_SHUTDOWN_TIMEOUT``, 5 s): on SIGTERM the server stops
  accepting, lets running requests finish for at most this long, then closes them; its
  query processes are stopped (running queries answer 503), so the server exits in
  about this time even with queries running.

The production layout (``--workers N`` on PostgreSQL, the job worker in its own process)
is described in docs/api.md.
"""

from __future__ import annotations

import asyncio
import os

from uvicorn.protocols.http.h11_impl import H11Protocol

DEFAULTS = {
    "NSDX_HEADER_TIMEOUT": 10.0,
    "NSDX_KEEP_ALIVE": 5.0,
    "NSDX_MAX_CONNECTIONS": 1000.0,
    "NSDX_SHUTDOWN_TIMEOUT": 5.0,
}


class ServerSettingError(ValueError):
    """A server setting that is not a positive number (the CLI names it)."""


def setting(name: str) -> float:
    """A positive number from the environment, or its default."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return DEFAULTS[name]
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ServerSettingError(f"{name}={raw!r} is not a positive number")
    return value


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(setting("NSDX_HEADER_TIMEOUT"), self._head_deadline)

    def _head_deadline(self) -> None:
        self._head_timer = None
        if self.cycle is None or self.cycle.response_complete:  # no request head came
            if not self.transport.is_closing():
                self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request's head has the same time

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)


def run(host: str, port: int, *, workers: int, log_level: str) -> None:
    """Serve the app with uvicorn under the bounds above."""
    import uvicorn

    uvicorn.run(
        "nsdx.web.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        http="nsdx.web.server:TimedH11Protocol",
        timeout_keep_alive=int(setting("NSDX_KEEP_ALIVE")),
        limit_concurrency=int(setting("NSDX_MAX_CONNECTIONS")),
        timeout_graceful_shutdown=int(setting("NSDX_SHUTDOWN_TIMEOUT")),
    )


__all__ = ["DEFAULTS", "ServerSettingError", "TimedH11Protocol", "run", "setting"]
