"""How ``nsdx serve`` runs the HTTP server (uvicorn), with the bounds a public server needs.

* **Header-read timeout** (``NSDX_HEADER_TIMEOUT``, 10 s): a connection that has not sent a
  whole request head within this time after it opened — or after its previous response —
  is closed. uvicorn alone waits for ever (300 idle sockets stayed open; a slow sender
  holds its connection as long as it likes).
* **Idle keep-alive** (``NSDX_KEEP_ALIVE``, 5 s): an idle kept-alive connection is closed.
* **Connections** (``NSDX_MAX_CONNECTIONS``, 1000 per server process): a request that
  arrives while more connections are open, or more requests are running, than this gets 503
  at once instead of queueing without bound — in the surface's one error shape
  (:class:`~nsdx.web.errors.ServerBusy`, ``Retry-After``; the branded page for a browser),
  not uvicorn's plain-text ``Service Unavailable``: the protocol counts and marks the
  request (:data:`OVER_CAPACITY` in its scope), and :class:`~nsdx.web.errors.Overloaded`
  answers it before any route, cookie or database is touched.
* **Graceful shutdown** (``NSDX_SHUTDOWN_TIMEOUT``, 5 s): on SIGTERM the server stops
  accepting, lets running requests finish for at most this long, then closes them; its
  query processes are stopped (running queries answer 503), so the server exits in
  about this time even with queries running.

The production layout (``--workers N`` on PostgreSQL, the job worker in its own process)
is described in docs/api.md.
"""

from __future__ import annotations

import asyncio
import logging
import os

from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import Overloaded

DEFAULTS = {
    "NSDX_HEADER_TIMEOUT": 10.0,
    "NSDX_KEEP_ALIVE": 5.0,
    "NSDX_MAX_CONNECTIONS": 1000.0,
    "NSDX_SHUTDOWN_TIMEOUT": 5.0,
}


log = logging.getLogger("nsdx.web")


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


# the scope key that marks a request past the cap (its value: the cap)
OVER_CAPACITY = Overloaded.KEY


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head, and the connection
    cap answered by the app (uvicorn's own answer to ``limit_concurrency`` is plain text)."""

    _head_timer: asyncio.TimerHandle | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn's check would swap the app for its text/plain 503; ours marks the request
        cap, self.limit_concurrency = self.limit_concurrency, None
        if cap is not None:
            self.app = _Capped(self.app, cap, self.connections, self.tasks)

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


class _Capped:
    """The app behind the cap: a request that finds more than ``cap`` connections open
    (its own included) or more than ``cap`` requests running in this server process (its
    own included: uvicorn adds a request's task before the app runs) is marked
    :data:`OVER_CAPACITY`; the app then answers it 503 in its error shape. The sets are
    uvicorn's own, shared by every connection of the process."""

    __slots__ = ("app", "cap", "connections", "tasks")

    def __init__(self, app, cap: int, connections: set, tasks: set) -> None:
        self.app, self.cap, self.connections, self.tasks = app, cap, connections, tasks

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and (
            len(self.connections) > self.cap or len(self.tasks) > self.cap
        ):
            scope[OVER_CAPACITY] = self.cap
            log.warning(
                "over the connection cap (NSDX_MAX_CONNECTIONS=%d): %d connections, %d requests",
                self.cap,
                len(self.connections),
                len(self.tasks),
            )
        await self.app(scope, receive, send)


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


__all__ = ["DEFAULTS", "OVER_CAPACITY", "ServerSettingError", "TimedH11Protocol", "run", "setting"]
