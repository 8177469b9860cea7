"""Named points where a crash test stops or kills this process: real kills at real points.

``bench/crash_harness.py`` (and its fast sample in ``tests/test_crash_consistency.py``)
SIGKILLs ``nsdx ingest`` and ledger appenders in the middle of their work. A kill after a
random delay lands anywhere; a *failpoint* lands exactly between two steps that matter
(after the data objects are uploaded and before the manifest; inside the catalogue
transaction before its commit). Each point is one call, ``hit("name")``, that costs a
dictionary look-up when nothing is set.

``NSDX_FAILPOINTS`` holds ``name=action[@n]`` items separated by commas: at the ``n``-th hit
(default the first) of ``name`` the process

* ``kill`` — sends itself SIGKILL (no clean-up, no ``finally``, no atexit: a crash);
* ``stop`` — sends itself SIGSTOP, so that the test can look at the state it left (or
  terminate its database connection) and then SIGKILL or SIGCONT it.

``NSDX_FAILPOINTS_TRACE=FILE`` appends the name of every point passed to ``FILE`` (one line,
flushed), so that a kill after a random delay can be put in its phase (reading, validating,
writing, committing). Neither variable is for production: they exist for the crash tests.
"""

from __future__ import annotations

import os
import signal

ENV = "NSDX_FAILPOINTS"
TRACE_ENV = "NSDX_FAILPOINTS_TRACE"

# every point, in the order a publish or an append passes them, with its phase
POINTS: dict[str, str] = {
    "ingest.read": "reading",  # a chunk of the source has been read
    "ingest.validated": "validating",  # the chunk passed (or was judged by) validation
    "ingest.written": "writing",  # the chunk is in the staged Parquet file
    "ingest.staged": "writing",  # every file and manifest.json are in staging
    "storage.uploaded": "committing",  # S3: one data object uploaded
    "storage.before_manifest": "committing",  # S3: data verified, manifest not yet written
    "storage.before_rename": "committing",  # local: staging complete, not yet renamed
    "storage.committed": "committing",  # manifest.json visible (S3) / renamed (local)
    "catalogue.register": "committing",  # storage holds the version, the catalogue not yet
    "catalogue.register.tx": "committing",  # inside the catalogue transaction, before commit
    "catalogue.registered": "committing",  # the pointer moved, the command not yet done
    "ledger.append": "appending",  # the ledger lock is held, nothing written yet
    "ledger.written": "appending",  # entries, head and checkpoint written, not committed
    "ledger.committed": "appending",  # committed, receipt not yet settled or printed
}

_parsed: tuple[str, dict[str, tuple[str, int]]] | None = None
_counts: dict[str, int] = {}


def _plan() -> dict[str, tuple[str, int]]:
    global _parsed
    raw = os.environ.get(ENV, "")
    if _parsed is None or _parsed[0] != raw:
        plan: dict[str, tuple[str, int]] = {}
        for item in filter(None, (p.strip() for p in raw.split(","))):
            name, _, action = item.partition("=")
            action, _, nth = action.partition("@")
            if name not in POINTS or action not in ("kill", "stop"):
                raise ValueError(f"{ENV}: unknown failpoint or action in {item!r}")
            plan[name] = (action, int(nth or 1))
        _parsed = (raw, plan)
    return _parsed[1]


def armed(name: str) -> bool:
    """Would :func:`hit` (``name``) do anything: a plan names it, or passes are traced?
    (A caller that would otherwise send the steps on either side of the point together
    sends them one by one, so that the point lies between them.)"""
    if os.environ.get(TRACE_ENV):
        return True
    return ENV in os.environ and name in _plan()


def hit(name: str) -> None:
    """Pass the failpoint ``name`` (one of :data:`POINTS`)."""
    trace = os.environ.get(TRACE_ENV)
    plan = _plan() if ENV in os.environ else None
    if trace is None and not plan:
        return
    if trace:
        with open(trace, "a", encoding="utf-8") as f:
            f.write(name + "\n")
    if plan and name in plan:
        _counts[name] = _counts.get(name, 0) + 1
        action, nth = plan[name]
        if _counts[name] == nth:
            os.kill(os.getpid(), signal.SIGKILL if action == "kill" else signal.SIGSTOP)
