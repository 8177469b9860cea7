"""Query processes: SQL from outside runs in worker processes of its own, so that its
memory and its time are held by the operating system, not only by DuckDB's goodwill.

DuckDB's ``memory_limit`` covers its buffer manager (sorts, joins, aggregates), not every
allocation: ``SELECT repeat('x', 900000000)`` grew a server by 1.7 GB, four at once by 7 GB,
and ``interrupt()`` is only seen between vectors, so such a query also ran past its time.
Here each query runs in a child process (``python -m catalogue.sandbox``) that

* is held to a resident size (:func:`process_memory`, by default DuckDB's ``memory_limit``
  plus 384 MiB for the interpreter, Arrow and the answer): the parent reads the child's RSS
  from ``/proc`` every 20 ms while it waits and kills it past the bound — a 400
  (:class:`QueryMemoryExceeded`); an address-space limit (``RLIMIT_AS``: what the process
  has mapped once DuckDB and Arrow are loaded and warm, plus that bound, plus 1.5 GiB) stops
  a faster allocation inside DuckDB as an out-of-memory error, also a 400. The allocators
  keep address space a large query mapped, so a process left with less spare address space
  than its resident bound retires after answering, and the next query gets a fresh one;
* is killed when the query runs past its time limit plus a short grace (DuckDB's own
  ``interrupt()`` comes first) — a 408;
* is killed at once when the pool closes (server shutdown), so no query holds a stopping
  server;
* runs at a lower CPU priority (``nice`` 10 by default): on a busy machine the catalogue's
  reads (search, show, exchange) are served first and queries take the CPU left over;
* keeps the locked connections of its last few table sets
  (:class:`~catalogue.query.LockedConnections`): the next query over the same tables skips
  opening a database (~25 ms, most of a small query's time); they are closed when a query
  on them fails and whenever the process holds more than half its resident bound.

:class:`QueryProcesses` is a bounded pool: ``size`` slots, one process per slot, started
on first use and reused (a process idle for ``idle`` seconds exits by itself, and so does
one whose parent is gone). Taking a slot never blocks a thread: :meth:`try_acquire` is
immediate, so the HTTP layer waits for a slot asynchronously and answers 503 with
Retry-After when none frees in time.

The protocol is length-prefixed pickle frames over the child's stdin/stdout, between a
parent and the child it started itself (nothing else can write to those pipes).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from validation.messages import Msg

from .errors import QueryError
from .query import (
    TIMED_OUT,
    LockedConnections,
    QueryJob,
    QueryLimits,
    QueryStorageError,
    QueryTimeout,
)

log = logging.getLogger("nsdx.query")

_LEN = struct.Struct("!Q")
HEADROOM = 384 * 1024 * 1024  # resident: interpreter, Arrow, the answer
ADDRESS_SLACK = 1536 * 1024 * 1024  # mapped, not resident, beyond a warm process: arenas, stacks
POLL = 0.02  # seconds between two looks at a running query's process
GRACE = 2.0  # seconds past the time limit before the process is killed
MAX_USES = 500  # a process is replaced after this many queries (fragmentation)
KEPT_CONNECTIONS = 4  # locked connections a query process keeps for its next queries


class QueryMemoryExceeded(QueryError):
    """The query needed more memory than a query process may use (HTTP 400)."""


class QueryCancelled(QueryError):
    """The server stopped while the query ran (HTTP 503, worth retrying)."""

    status = 503
    transient = True


def memory_bytes(text: str) -> int:
    """DuckDB's memory size notation (``1GB``, ``512MB``, ``2GiB``, ``1.5 GB``) in bytes."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(i?)b?\s*", text.lower())
    if not m:
        raise QueryError(
            f"the memory size {text!r} is not understood",
            hint="write it as DuckDB does: 512MB, 1GB, 2GiB",
        )
    base = 1024 if m.group(3) else 1000
    unit = {"": 1, "k": base, "m": base**2, "g": base**3, "t": base**4}[m.group(2)]
    return int(float(m.group(1)) * unit)


def process_memory(limits: QueryLimits) -> int:
    """The resident memory a query process may use under ``limits`` (bytes)."""
    if limits.process_memory:
        return int(limits.process_memory)
    return memory_bytes(limits.memory_limit) + HEADROOM


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes(pid: int) -> int:
    """The resident set of process ``pid`` (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def mapped_bytes(pid: int | str = "self") -> int:
    """The address space process ``pid`` has mapped (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[0]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


# -- frames ---------------------------------------------------------------------------------
def _write(fd: int, obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_LEN.pack(len(data)) + data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    """``n`` bytes from ``fd``; None at end of file; TimeoutError past ``deadline``."""
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read(fd: int, deadline: float | None = None) -> object | None:
    head = _read_exact(fd, _LEN.size, deadline)
    if head is None:
        return None
    body = _read_exact(fd, _LEN.unpack(head)[0], deadline)
    return None if body is None else pickle.loads(body)  # noqa: S301 - our own child


# -- the child ------------------------------------------------------------------------------
def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def _answer(job: QueryJob, connections: LockedConnections) -> tuple:
    try:
        table, truncated = connections.run(job)
        return ("ok", _ipc(table), truncated)
    except QueryError as e:
        return ("error", type(e).__name__, e.message, e.hint)
    except MemoryError:
        return (
            "error",
            "QueryMemoryExceeded",
            Msg("the query needs more memory than it may use"),
            None,
        )


def _warm_up() -> None:
    """Load DuckDB and Arrow and let their allocators make their first reservations (Arrow's
    mimalloc maps a 1 GiB arena on first use), so that what is mapped afterwards is the
    process's own baseline, not a query's."""
    from validation.duck import connect

    from . import query  # noqa: F401 - the module every job runs in

    con = connect()
    try:
        _ipc(con.execute("SELECT 1 AS x").to_arrow_table())
    finally:
        con.close()


def child_main(argv: list[str]) -> int:
    """The query process: read a job, answer it, until stdin closes or it idles out.

    ``argv``: the resident bound (bytes; 0 for none), the idle time, the nice value, the
    address-space slack (bytes)."""
    import resource

    limit, idle = int(argv[0]), float(argv[1])
    if len(argv) > 2 and int(argv[2]) > 0:
        os.nice(int(argv[2]))  # catalogue reads get the CPU first
    slack = int(argv[3]) if len(argv) > 3 else ADDRESS_SLACK
    out = os.dup(1)
    os.dup2(2, 1)  # anything printed goes to the log, never into the answers
    inp = 0
    _warm_up()
    cap = 0
    if limit > 0:
        cap = mapped_bytes() + limit + slack
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    # locked connections kept between queries over the same tables (see LockedConnections);
    # dropped while the process holds more than half its resident bound, so what they keep
    # (DuckDB's caches) never brings a small query near the bound
    connections = LockedConnections(KEPT_CONNECTIONS)
    while True:
        if not select.select([inp], [], [], idle)[0]:
            connections.clear()
            return 0  # idle: the next query starts a new process
        job = _read(inp)
        if job is None:
            connections.clear()
            return 0  # the parent is gone
        try:
            reply = _answer(job, connections)  # type: ignore[arg-type]
        except Exception as e:  # noqa: BLE001 - reported to the parent, which logs it
            reply = ("fault", f"{type(e).__name__}: {e}")
        if limit > 0 and resident_bytes(os.getpid()) > limit // 2:
            connections.clear()
        # retire when less address space is left than the next query may hold resident
        retire = bool(cap) and cap - mapped_bytes() < limit
        try:
            _write(out, (reply, retire))
        except MemoryError:
            reply = ("error", "QueryMemoryExceeded", Msg("the answer is too large"), None)
            _write(out, (reply, True))
        if retire:
            return 0


# -- the parent -----------------------------------------------------------------------------
_ERRORS: dict[str, type[QueryError]] = {
    "QueryError": QueryError,
    "QueryTimeout": QueryTimeout,
    "QueryStorageError": QueryStorageError,
    "QueryMemoryExceeded": QueryMemoryExceeded,
}
_MEMORY_HINT = Msg(
    "the query needs more memory than a query API request may use; aggregate or filter "
    "more, or read the data with your own DuckDB (nsdx.connect)"
)


@dataclass(eq=False)
class _Proc:
    popen: subprocess.Popen
    limit: int
    uses: int = 0
    retired: bool = False  # it said it leaves after its answer

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a kill not taken
            log.warning("query process %s did not stop", self.popen.pid)
        for f in (self.popen.stdin, self.popen.stdout):
            if f is not None:
                f.close()


class QueryProcesses:
    """A bounded pool of query processes (see the module's text)."""

    def __init__(
        self, size: int, *, idle: float = 120.0, nice: int = 10, slack: int = ADDRESS_SLACK
    ) -> None:
        self.size = max(1, int(size))
        self.idle = idle
        self.nice = nice
        self.slack = slack
        self._lock = threading.Lock()
        self._free: list[_Proc] = []
        self._running: set[_Proc] = set()
        self._held = 0
        self._closed = False

    # slots
    def try_acquire(self) -> bool:
        """Take a slot if one is free (never waits)."""
        with self._lock:
            if self._closed or self._held >= self.size:
                return False
            self._held += 1
            return True

    def acquire(self, timeout: float) -> bool:
        """Take a slot, waiting up to ``timeout`` seconds (for callers on a thread)."""
        deadline = time.monotonic() + timeout
        while not self.try_acquire():
            if self._closed or time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def release(self) -> None:
        with self._lock:
            self._held = max(0, self._held - 1)

    @property
    def busy(self) -> int:
        with self._lock:
            return self._held

    # processes
    def _spawn(self, limit: int) -> _Proc:
        cmd = [
            sys.executable,
            "-m",
            "catalogue.sandbox",
            str(limit),
            str(self.idle),
            str(self.nice),
            str(self.slack),
        ]
        popen = subprocess.Popen(  # noqa: S603 - our own module, no shell
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
        )
        return _Proc(popen, limit)

    def _take(self, limit: int) -> _Proc:
        with self._lock:
            if self._closed:
                raise _stopping()
            while self._free:
                p = self._free.pop()
                if p.alive() and p.limit == limit:
                    self._running.add(p)
                    return p
                p.kill()
            p = self._spawn(limit)
            self._running.add(p)
            return p

    def _give_back(self, p: _Proc, healthy: bool) -> None:
        with self._lock:
            self._running.discard(p)
            if healthy and not self._closed and not p.retired and p.alive() and p.uses < MAX_USES:
                self._free.append(p)
                return
        p.kill()
        # its successor starts now (imports while nobody waits for it); this runs in the
        # query's `finally`, so a failure here must not replace the query's own answer (a
        # timeout, a memory error): it is logged, and the next query starts its own process
        try:
            with self._lock:
                if not self._closed:
                    self._free.append(self._spawn(p.limit))
        except Exception:  # noqa: BLE001 - e.g. no more processes or memory for a fork
            log.warning("could not start a spare query process", exc_info=True)

    def run(self, job: QueryJob, budget: float) -> tuple[pa.Table, bool]:
        """Run ``job`` in a query process within ``budget`` seconds (the caller holds a
        slot): (rows, truncated), or the query's error."""
        limit = process_memory(job.limits)
        p = self._take(limit)
        healthy = False
        try:
            assert p.popen.stdin is not None and p.popen.stdout is not None
            out = p.popen.stdout.fileno()
            deadline = time.monotonic() + budget + GRACE
            try:
                _write(p.popen.stdin.fileno(), job)
                while not select.select([out], [], [], POLL)[0]:
                    if resident_bytes(p.popen.pid) > limit:
                        p.kill()
                        raise QueryMemoryExceeded(
                            Msg(
                                "the query used more than %(mib)s MiB and was stopped",
                                mib=limit // 2**20,
                            ),
                            hint=_MEMORY_HINT,
                        )
                    if time.monotonic() > deadline:
                        raise TimeoutError
                reply = _read(out, deadline)
            except TimeoutError:
                raise QueryTimeout(TIMED_OUT) from None
            except (BrokenPipeError, OSError, EOFError, pickle.UnpicklingError):
                reply = None
            p.uses += 1
            if reply is None:
                if self._closed:
                    raise _stopping()
                code = p.popen.poll()
                log.warning("query process %s ended (exit %s)", p.popen.pid, code)
                raise QueryMemoryExceeded(
                    Msg("the query stopped its process (most likely by passing the memory limit)"),
                    hint=_MEMORY_HINT,
                )
            framed: tuple = reply  # type: ignore[assignment]
            answer: tuple = framed[0]
            p.retired = bool(framed[1])
            kind = answer[0]
            if kind == "ok":
                healthy = True
                table = pa.ipc.open_stream(answer[1]).read_all()
                return table, bool(answer[2])
            if kind == "error":
                healthy = True
                name, message, hint = str(answer[1]), answer[2], answer[3]
                message = message if isinstance(message, str) else str(message)  # a Msg kept
                cls = _ERRORS.get(name, QueryError)
                if cls is QueryMemoryExceeded or "Out of Memory" in message:
                    raise QueryMemoryExceeded(message, hint=_MEMORY_HINT)
                raise cls(message, hint=hint)
            raise RuntimeError(f"query process fault: {answer[1]}")
        finally:
            self._give_back(p, healthy)

    def runner(self) -> Callable[[QueryJob, float], tuple[pa.Table, bool]]:
        return self.run

    def close(self) -> None:
        """Stop every process, running queries included (they answer 503)."""
        with self._lock:
            self._closed = True
            procs = [*self._free, *self._running]
            self._free.clear()
        for p in procs:
            p.kill()


def _stopping() -> QueryCancelled:
    return QueryCancelled(
        "the server is stopping; the query was not finished",
        hint="send it again in a moment",
    )


__all__ = [
    "QueryCancelled",
    "QueryMemoryExceeded",
    "QueryProcesses",
    "memory_bytes",
    "process_memory",
    "resident_bytes",
]

if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
