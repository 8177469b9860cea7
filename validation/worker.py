"""Row-level validation in a worker process.

great-expectations takes seconds to import (GIL-bound Python) and then works on every chunk in
pandas; the ingest process meanwhile mostly waits on Arrow (which releases the GIL). Running
the great-expectations half (:class:`~validation.runner.RowChecks`) in a worker lets the two
overlap on two cores, and keeps great-expectations' memory out of the ingest process. The
worker imports great-expectations in a background thread (:class:`_Warmup`) so that it takes
in the first chunk, and counts its distinct values with Arrow, meanwhile.

Protocol, over a socket with :class:`multiprocessing.connection.Connection` framing (the
parent is trusted — it is the same user, see below — and messages are pickled)::

    parent -> worker   ("open", params)                  build a RowChecks for one table
                       ("chunk", offset, n) + n buffers  Arrow IPC streams of one chunk
                       ("finish", files)                 -> ("done", {index: result})
                       ("end",)                          forget the table; stay warm
    worker -> parent   ("error", packed exception)       as soon as anything fails
                       ("hello", {pid, code, served})    first, from a lingering worker

A worker serves one table at a time and is kept warm for the next one (``nsdx ingest --all``
imports great-expectations once); a worker whose parent is idle for :data:`IDLE_SECONDS`
leaves it. The worker ignores SIGINT (Ctrl-C reaches the whole process group; the parent
decides). A worker that dies or fails is killed and reaped, and the parent raises
:class:`ValidationWorkerError`.

Lingering (``NSDX_VALIDATION_LINGER`` seconds, default :data:`DEFAULT_LINGER`; Linux only):
when its parent goes with no table open, the worker detaches (new session, no inherited
terminal or pipes) and listens on a Linux abstract socket named after
:func:`code_fingerprint` (interpreter, these files, great-expectations' version, user id).
The next command of that user and code connects (:meth:`_Worker.connect`) and is served warm.
Both ends check the other's user id with ``SO_PEERCRED``. While serving, the worker does not
listen: a second command starts its own worker, and whichever returns to listening second
finds the name taken and exits. A worker whose parent went mid-table exits (its state is
unknown), and so does one that waits ``linger`` seconds without a command.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ValidationPackageError

if TYPE_CHECKING:
    import pyarrow as pa

IDLE_SECONDS = 60.0  # a warm worker with nothing to do exits after this long
# A worker that is stopped (SIGSTOP, a debugger: state T in /proc) this long is given up on,
# with an error naming it, instead of hanging the command without a word.
STOPPED_SECONDS = 10.0
REUSE_SECONDS = IDLE_SECONDS / 2  # ... and the parent reuses one idle for less than this
_ROOT = str(Path(__file__).resolve().parent.parent)
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[2]); "
    "from validation.worker import serve; serve(int(sys.argv[1]), float(sys.argv[3]))"
)
DEFAULT_LINGER = 600.0


class ValidationWorkerError(ValidationPackageError):
    """The validation worker process died or failed unexpectedly."""

    status = 500
    transient = True


# -- errors across the process boundary ---------------------------------------------------


def _pack(exc: BaseException) -> tuple:
    """An exception as plain data; ValidationPackageErrors come back as themselves."""
    if isinstance(exc, ValidationPackageError):
        return ("known", type(exc), exc.args, dict(vars(exc)))
    text = "".join(traceback.format_exception(exc)).strip()
    return ("other", f"{type(exc).__name__}: {exc}", text)


def _unpack(packed: tuple) -> ValidationPackageError:
    if packed[0] == "known":
        _, cls, args, state = packed
        exc = cls.__new__(cls)
        Exception.__init__(exc, *args)
        exc.__dict__.update(state)
        return exc
    return ValidationWorkerError(
        f"validation failed in the worker process: {packed[1]}",
        hint="this is a bug in nsdx or great-expectations; the traceback is in `details`",
        details=packed[2],
    )


def _ipc(batch: pa.RecordBatch) -> pa.Buffer:
    import pyarrow as pa  # noqa: PLC0415 — not needed to start a worker (see prestart)

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as w:
        w.write_batch(batch)
    return sink.getvalue()


def _read_ipc(data: bytes) -> pa.RecordBatch:
    import pyarrow as pa  # noqa: PLC0415

    return pa.ipc.open_stream(data).read_next_batch()  # zero-copy over ``data``


# -- the worker process ---------------------------------------------------------------------


def release_memory() -> None:
    """Give freed memory back to the system: Arrow's pool and glibc's heap (pandas, numpy)
    keep it otherwise (a warm worker would sit on its last chunk's pages, the pipeline on a
    table's chunks while DuckDB checks it)."""
    import pyarrow as pa  # noqa: PLC0415

    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class _Warmup(threading.Thread):
    """Imports great-expectations (the slow part of a worker's start) in the background, so
    the worker can take in its first chunk meanwhile."""

    def __init__(self) -> None:
        super().__init__(name="nsdx-gx-import", daemon=True)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            from . import gx, runner  # noqa: F401, PLC0415

            gx.warm(defer_unused=True)
        except BaseException as e:  # noqa: BLE001 — raised by wait(), in the main thread
            self.error = e

    def wait(self) -> None:
        self.join()
        if self.error is not None:
            raise self.error


def serve(fd: int, linger: float = 0.0) -> None:
    """The worker's main loop (runs in the child; see the module docstring): serve the parent
    that started it, then, with ``linger``, later nsdx commands for that many idle seconds."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    code = code_fingerprint() if linger > 0 else ""  # the code this process runs: as it starts
    warmup = _Warmup()
    warmup.start()  # while the parent starts reading, and this loop takes in the first chunk
    conn: Connection | None = Connection(fd)
    deadline = None
    while conn is not None:
        clean = _session(conn, warmup)
        conn.close()
        release_memory()
        if not clean or linger <= 0:
            return
        if deadline is None:
            _detach_from_command()
        deadline = time.monotonic() + linger
        conn = _next_client(code, deadline)


def _session(conn: Connection, warmup: _Warmup) -> bool:
    """Serve one parent until it goes; True when it left no table open (the worker's state is
    clean and it may serve another), False after an idle timeout or mid-table."""
    params: dict | None = None  # the open table's; its RowChecks is built at first use
    checks: Any = None
    failed: tuple | None = None

    def table_checks() -> Any:
        nonlocal checks
        if checks is None:
            if params is None:
                raise RuntimeError("no table is open")
            warmup.wait()
            from .runner import RowChecks  # noqa: PLC0415

            checks = RowChecks(**params)
        return checks

    while True:
        try:
            if params is None and failed is None and not conn.poll(IDLE_SECONDS):
                return True
            msg = conn.recv()
        except (EOFError, OSError):
            return params is None
        kind = msg[0]
        try:
            if kind == "chunk":
                batches = [_read_ipc(conn.recv_bytes()) for _ in range(msg[2])]
                if failed is None:
                    import pyarrow as pa  # noqa: PLC0415

                    table = pa.Table.from_batches(batches)
                    counts = None
                    if warmup.is_alive():  # the Arrow half of the checks, while GX imports
                        from .runner import distinct_counts  # noqa: PLC0415

                        counts = distinct_counts(table)
                    table_checks().check_batch(table, msg[1], counts)
                    del table, counts
                del batches
                release_memory()
            elif kind == "open":
                params, checks, failed = msg[1], None, None
            elif kind == "finish":
                if failed is None:
                    conn.send(("done", table_checks().results(msg[1])))
                else:
                    conn.send(("error", failed))
            elif kind == "end":
                if checks is not None:
                    checks.close()
                params, checks, failed = None, None, None
                release_memory()
        except Exception as e:  # noqa: BLE001 — every failure goes back to the parent
            failed = _pack(e)
            try:
                conn.send(("error", failed))
            except OSError:
                return False
            except Exception:  # noqa: BLE001 — an exception that does not pickle
                failed = _pack(RuntimeError(str(e)))
                conn.send(("error", failed))


# -- lingering: one warm worker for later commands ------------------------------------------


_DEPENDENCIES = ("great_expectations", "pandas", "numpy", "pyarrow", "scipy")


def code_fingerprint() -> str:
    """Which code a worker runs: the interpreter, this package's files and the libraries it
    validates with (file stats, nothing imported; an upgrade rewrites them). A lingering
    worker serves only commands that run the same code; it computes this once, at its start."""
    import hashlib  # noqa: PLC0415
    import importlib.util  # noqa: PLC0415

    parts = [sys.executable, _ROOT, str(os.getuid())]
    here = Path(__file__).resolve().parent
    paths = sorted(here.glob("*.py"))
    for name in _DEPENDENCIES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            paths.append(Path(spec.origin))
    for path in paths:
        st = path.stat()
        parts.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _address(code: str) -> str:
    """The worker's Linux abstract socket name (no file; gone when the process goes)."""
    return f"\0nsdx-validation-{code[:32]}"


def _peer(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a Unix socket (SO_PEERCRED)."""
    import struct  # noqa: PLC0415

    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return pid, uid


def _detach_from_command() -> None:
    """Outlive the command that started this worker without holding its terminal, pipes,
    working directory or process group (a ``$(nsdx ingest ...)`` or a pipe would otherwise
    wait for us). Its environment was trimmed when it started (:func:`_worker_env`)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    os.chdir("/")  # nor its working directory (paths it is sent are absolute)
    try:
        os.setsid()
    except OSError:  # already a session leader
        pass


_served = [1]  # commands this worker has served (the first is the one that started it)
_MAX_LINGER = 86400.0


def _next_client(code: str, deadline: float) -> Connection | None:
    """Wait until ``deadline`` for another nsdx command of the same user and code; None when
    none came or another worker holds the address (then this one exits)."""
    if sys.platform != "linux":
        return None
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(_address(code))
    except OSError:  # another lingering worker serves this code
        listener.close()
        return None
    listener.listen(8)
    with listener:
        while (left := deadline - time.monotonic()) > 0:
            listener.settimeout(left)
            try:
                sock, _ = listener.accept()
            except OSError:  # TimeoutError included
                return None
            sock.settimeout(None)
            try:
                ours = _peer(sock)[1] == os.getuid()  # only our own user's commands
            except OSError:
                ours = False
            if not ours:
                sock.close()
                continue
            conn = Connection(sock.detach())
            try:
                conn.send(("hello", {"pid": os.getpid(), "code": code, "served": _served[0] + 1}))
            except OSError:  # the command gave up waiting: wait for the next
                conn.close()
                continue
            _served[0] += 1
            # the listener closes while a command is served: others start their own worker
            return conn
    return None


# -- the parent side ------------------------------------------------------------------------


class _Worker:
    """A worker process and the parent's end of its socket: one this process started, or a
    lingering one it connected to (:meth:`connect`)."""

    def __init__(self, linger: float = 0.0) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.proc: subprocess.Popen | None = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(theirs.fileno()), _ROOT, str(linger)],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # stdout may carry the CLI's --json output
                env=_worker_env(),
            )
        finally:
            theirs.close()
        self.pid = self.proc.pid
        self._pidfd: int | None = None
        self.conn = Connection(ours.detach())
        self.idle_since = 0.0
        self.served: int | None = None  # for a lingering worker: commands served, this one too

    @classmethod
    def connect(cls) -> _Worker | None:
        """The lingering worker for this code and user, if one is free (else None)."""
        if sys.platform != "linux":
            return None
        code = code_fingerprint()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(_address(code))
            pid, uid = _peer(sock)
        except OSError:
            sock.close()
            return None
        if uid != os.getuid():  # someone else holds the name: never send them data
            sock.close()
            return None
        conn = Connection(sock.detach())
        try:
            # a busy worker is not listening; one that just started serving another command
            # drops the connection: both mean "start your own"
            if not conn.poll(5):
                raise EOFError
            kind, info = conn.recv()
            if kind != "hello" or info["code"] != code or info["pid"] != pid:
                raise EOFError
        except Exception:  # noqa: BLE001 — EOF, a reset, a reply that is not ours: start our own
            conn.close()
            return None
        w = cls.__new__(cls)
        w.proc, w.pid, w.conn, w.idle_since = None, pid, conn, 0.0
        w.served = info.get("served")
        w._pidfd = _pidfd(pid)  # stop() signals this process, even if its pid is reused later
        return w

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return not self.conn.closed and Path(f"/proc/{self.pid}").exists()

    def stop(self) -> None:
        """Kill (and reap, if ours): its state is unknown."""
        self.conn.close()
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            return
        try:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)
        except OSError:  # already gone
            pass
        self._close_pidfd()

    def _close_pidfd(self) -> None:
        pidfd = getattr(self, "_pidfd", None)
        if pidfd is not None:
            os.close(pidfd)
            self._pidfd = None

    def leave(self) -> None:
        """Done with an idle worker: with lingering on, it stays for later commands (or exits
        if another one already does); otherwise it is stopped."""
        try:
            linger = linger_seconds()
        except ValidationPackageError:  # reported where the worker was acquired
            linger = 0.0
        if linger <= 0:
            self.stop()
            return
        self.conn.close()
        self._close_pidfd()
        _reap_left()
        if self.proc is not None:  # reaped by a later _reap_left() once it exits
            _left.append(self.proc)

    def exit_status(self) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return None


_idle: list[_Worker] = []
_left: list[subprocess.Popen] = []  # workers this process started that now serve others
_pool_lock = threading.Lock()


_ENV_KEEP = ("PATH", "HOME", "USER", "LANG", "LANGUAGE", "TZ", "TMPDIR", "SYSTEMROOT")
_ENV_PREFIXES = ("LC_", "PYTHON", "GX_", "OMP_", "OPENBLAS_", "MKL_", "ARROW_", "NSDX_VALIDATION_")


def _worker_env() -> dict[str, str]:
    """The worker's environment: locale, paths, Python's and the libraries' own settings, and
    nothing else — no keys, passwords or database URLs in a process that may outlive its
    command (it is sent all it needs)."""
    return {k: v for k, v in os.environ.items() if k in _ENV_KEEP or k.startswith(_ENV_PREFIXES)}


def _reap_left() -> None:
    """Reap workers this process started that served others and have exited since."""
    _left[:] = [p for p in _left if p.poll() is None]


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux ≥ 5.3, or already gone
        return None


def _acquire() -> _Worker:
    _reap_left()
    with _pool_lock:
        while _idle:
            w = _idle.pop()
            if w.alive() and time.monotonic() - w.idle_since < REUSE_SECONDS:
                return w
            w.leave()
    linger = linger_seconds()
    if linger > 0 and (lingering := _Worker.connect()) is not None:
        return lingering
    return _Worker(linger)


def _release(w: _Worker) -> None:
    with _pool_lock:
        if not _idle and w.alive():
            w.idle_since = time.monotonic()
            _idle.append(w)
            return
    w.leave()


@atexit.register
def shutdown() -> None:
    """Let go of the idle workers (at exit; also handy in tests)."""
    with _pool_lock:
        workers = list(_idle)
        _idle.clear()
    for w in workers:
        w.leave()


def linger_seconds() -> float:
    """How long an idle worker stays for later commands (NSDX_VALIDATION_LINGER; 0 = never)."""
    raw = os.environ.get("NSDX_VALIDATION_LINGER", "").strip()
    if not raw:
        return DEFAULT_LINGER if sys.platform == "linux" else 0.0
    try:
        value = float(raw)
        if value != value:  # NaN
            raise ValueError
    except ValueError:
        raise ValidationPackageError(
            f"NSDX_VALIDATION_LINGER={raw!r} is not a number of seconds",
            hint="set it to e.g. 600, or 0 to stop validation workers with their command",
        ) from None
    return min(max(0.0, value), _MAX_LINGER)  # at most a day


def prestart() -> None:
    """Start a worker now so great-expectations is imported by the time a pipeline needs it
    (call early, e.g. when a CLI command knows it will validate)."""
    _release(_acquire())


class RemoteRowChecks:
    """:class:`~validation.runner.RowChecks` in a worker process, for ``fail`` and ``warn``.

    ``check_batch`` queues the chunk and returns at once; a sender thread ships it (only the
    ``columns`` the expectations read) while the caller goes on. Errors from the worker are
    raised by the next call. ``close`` ends the session: the worker is kept warm after a
    clean finish, killed otherwise.
    """

    def __init__(self, params: dict[str, Any], columns: list[str]) -> None:
        self.columns = columns
        self._worker: _Worker | None = _acquire()  # None once closed
        self._queue: queue.Queue = queue.Queue()
        self._error: ValidationPackageError | None = None
        self._done = False
        self._send(("open", params))
        self._thread = threading.Thread(target=self._sender, name="nsdx-validation", daemon=True)
        self._thread.start()

    @property
    def _live(self) -> _Worker:
        """The session's worker; a closed session has given it back."""
        w = self._worker
        if w is None:
            raise ValidationWorkerError(
                "the validation session is closed",
                hint="this is a bug in nsdx: a closed row check was used again",
            )
        return w

    # sender thread -------------------------------------------------------------------------
    def _sender(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                if self._error is not None:
                    continue  # drain: the caller raises at its next call
                if item[0] == "chunk":
                    self._ship(item[1], item[2])
                else:
                    self._send(item)
            except (OSError, EOFError):
                self._error = self._died()
            except ValidationPackageError as e:
                self._error = e
            except Exception as e:  # noqa: BLE001 — a bug here must not hang the caller
                self._error = ValidationWorkerError(
                    f"sending a chunk to the validation worker failed: {type(e).__name__}: {e}"
                )
            finally:
                del item  # the chunk's memory goes as soon as it is sent
                self._queue.task_done()

    def _ship(self, chunk: pa.RecordBatch | pa.Table, offset: int) -> None:
        part = chunk.select(self.columns)
        batches = part.to_batches() if hasattr(part, "to_batches") else [part]
        self._send(("chunk", offset, len(batches)))
        for b in batches:
            self._live.conn.send_bytes(_ipc(b))
        if self._live.conn.poll():  # the worker reports a failure at once
            self._take_reply()

    # caller's side -------------------------------------------------------------------------
    def check_batch(self, batch: pa.RecordBatch | pa.Table, row_offset: int) -> None:
        self._raise_pending()
        if self.columns and batch.num_rows:
            # hand over once the previous chunk is sent: the caller then holds this chunk and
            # the next one it gathers, never more (the worker holds the one it validates)
            self._wait_sent()
            self._raise_pending()
            self._queue.put(("chunk", batch, row_offset))

    def finish(self, files: list[str]) -> Callable[[], dict]:
        """Ask for the results (after the chunks still queued); the returned function waits
        for them, so the caller can work meanwhile."""
        self._raise_pending()
        # absolute: a lingering worker runs in "/", not in the command's working directory
        self._queue.put(("finish", [os.path.abspath(f) for f in files]))
        return self._results

    def _results(self) -> dict:
        self._wait_sent()  # watching the worker: a stopped one never reads what is sent
        self._stop_sender()
        self._raise_pending()
        try:
            self._wait_reply()
            reply = self._take_reply()
            while reply[0] != "done":  # pragma: no cover — defensive
                reply = self._take_reply()
        except (OSError, EOFError):
            raise self._died() from None
        self._done = True
        return reply[1]

    def quarantine_reason(self, batch: pa.RecordBatch | pa.Table) -> pa.Array:
        raise ValueError("quarantine_rows validates in-process (see BatchValidator)")

    def close(self) -> None:
        """End the session: keep the worker warm after a clean finish, else kill it."""
        w = self._worker
        if w is None:
            return
        if not self._done:
            w.stop()  # interrupted or failed: its state is unknown
        self._stop_sender()
        self._worker = None
        if self._done:
            try:
                w.conn.send(("end",))
            except OSError:
                w.stop()
                return
            _release(w)

    # helpers -----------------------------------------------------------------------------
    def _wait_sent(self) -> None:
        """queue.join(), watching the worker: a stopped worker never reads what is sent."""
        q = self._queue
        with q.all_tasks_done:
            while q.unfinished_tasks:
                q.all_tasks_done.wait(1.0)
                if q.unfinished_tasks:
                    self._check_stopped()

    def _wait_reply(self) -> None:
        while not self._live.conn.poll(1.0):
            self._check_stopped()

    def _check_stopped(self) -> None:
        """Raise once the worker has been stopped (not running, not dead) STOPPED_SECONDS."""
        if _state(self._live.pid) not in ("T", "t"):
            self._stopped_since = None
            return
        now = time.monotonic()
        since = getattr(self, "_stopped_since", None) or now
        self._stopped_since = since
        if now - since >= STOPPED_SECONDS:
            pid = self._live.pid
            raise ValidationWorkerError(
                f"the validation worker process (pid {pid}) is stopped (SIGSTOP or a "
                f"debugger) and did not resume within {STOPPED_SECONDS:.0f} s",
                hint="nothing was published; run the command again (the stopped worker is "
                "killed), or set NSDX_VALIDATION_WORKER=0 to validate in-process",
                pid=pid,
            )

    def _stop_sender(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _send(self, msg: tuple) -> None:
        try:
            self._live.conn.send(msg)
        except OSError:
            raise self._died() from None

    def _take_reply(self) -> tuple:
        reply = self._live.conn.recv()
        if reply[0] == "error":
            raise _unpack(reply[1])
        return reply

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error

    def _died(self) -> ValidationWorkerError:
        code = self._live.exit_status()
        if code is None:
            how = "its connection closed"
        elif code < 0:
            how = f"killed by signal {signal.Signals(-code).name}"
        else:
            how = f"exit status {code}"
        return ValidationWorkerError(
            f"the validation worker process stopped unexpectedly ({how})",
            hint="nothing was published; run the command again (if the machine ran out of "
            "memory, free some), or set NSDX_VALIDATION_WORKER=0 to validate in-process",
            pid=self._live.pid,
        )


def _state(pid: int) -> str | None:
    """The process state letter from /proc (R, S, D, T, t, Z ...), None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :][:1] or None


def enabled() -> bool:
    """Whether the pipeline validates in a worker (NSDX_VALIDATION_WORKER=0 turns it off)."""
    return os.environ.get("NSDX_VALIDATION_WORKER", "1").strip().lower() not in ("0", "false", "no")


def may_be_wanted(expectations: list[dict] | tuple[dict, ...], on_invalid: str) -> bool:
    """A quick superset of :func:`wanted`, without parsing (nor importing pyarrow): to start
    a worker as early as possible; when it is not wanted after all, it is let go at exit.
    Expectations that Arrow judges (:mod:`validation.native`) or DuckDB (dataset level) need
    no great-expectations, so no worker."""
    return (
        enabled()
        and on_invalid != "quarantine_rows"
        and any(_needs_gx(e) for e in expectations if isinstance(e, dict))
    )


def gx_in_process(expectations: list[dict] | tuple[dict, ...], on_invalid: str) -> bool:
    """Might great-expectations (and so pandas) run in this process? (A superset, like
    :func:`may_be_wanted`: some expectations need it, and no worker runs them.)"""
    return any(_needs_gx(e) for e in expectations if isinstance(e, dict)) and not (
        enabled() and on_invalid != "quarantine_rows"
    )


_NO_GX_KEYS = ("unique", "row_count", "min", "max", "mean", "distinct", "freshness", "in_dataset")
_RE2_UNSUPPORTED = ("(?=", "(?!", "(?<=", "(?<!", "\\1", "\\2", "(?P=")


def _needs_gx(e: dict) -> bool:
    """Might this ``expectations:`` entry run through great-expectations? (A guess from the
    entry alone, without the column types: :func:`validation.native.supported` decides.)"""
    if "gx" in e or e.get("row_condition"):
        return True
    if any(k in e for k in _NO_GX_KEYS):
        return False
    if "not_null" in e or "length" in e:
        return False
    if "between" in e:
        bounds = e["between"] if isinstance(e["between"], list | tuple) else []
        return not all(b is None or isinstance(b, int | float) for b in bounds)
    if "in_set" in e:
        values = e["in_set"] if isinstance(e["in_set"], list | tuple) else []
        return not all(isinstance(v, str) for v in values)
    if "regex" in e:
        return any(t in str(e["regex"]) for t in _RE2_UNSUPPORTED)
    return True


def wanted(expectations: list[dict] | tuple[dict, ...], on_invalid: str) -> bool:
    """Whether validating these expectations will use a worker (when :func:`enabled`): some
    run through great-expectations, and ``on_invalid`` is not ``quarantine_rows``."""
    from .shorthand import DATASET, parse_expectations  # noqa: PLC0415

    if not may_be_wanted(expectations, on_invalid):
        return False
    tables = {e.get("table") for e in expectations if isinstance(e, dict)}
    try:
        parsed = [e for t in tables for e in parse_expectations(expectations, None, table=t)]
    except ValidationPackageError:
        return False  # the validator will report it
    return any(e.level != DATASET for e in parsed)


__all__ = [
    "RemoteRowChecks",
    "ValidationWorkerError",
    "enabled",
    "gx_in_process",
    "linger_seconds",
    "may_be_wanted",
    "prestart",
    "release_memory",
    "serve",
    "shutdown",
    "wanted",
]
