"""Query slots (review finding 11, issue 15): a slot is held until the thread running its
query is done, even when the request waiting for it is cancelled; a query process that
cannot be replaced does not hide the query's own error.

In-process, on the real pool (:class:`nsdx.web.query._Pool`: the query processes' slots and
the thread pool) and real query processes. No assertion is about time: each waits for a
state up to a bound whose only purpose is not to hang the suite.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest

from catalogue.query import QueryJob, QueryLimits, QueryTimeout
from catalogue.sandbox import QueryProcesses
from nsdx.web.query import _in_slot, _Pool


def test_a_cancelled_request_keeps_its_slot_until_its_query_ends():
    """Before, cancelling the request gave the slot back at once while its thread (and
    query process) ran on, so another query took the slot: two at once with one slot."""
    pool = _Pool(1)
    started, gate = threading.Event(), threading.Event()

    def query() -> str:
        started.set()
        gate.wait(60)
        return "rows"

    async def main() -> None:
        assert pool.procs.try_acquire()
        task = asyncio.ensure_future(_in_slot(pool, query))
        assert await asyncio.to_thread(started.wait, 60)
        task.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.procs.busy == 1  # the query still runs: its slot is still taken
        assert not pool.procs.try_acquire()
        gate.set()  # the query ends: now the slot is free
        bound = time.monotonic() + 30
        while pool.procs.busy and time.monotonic() < bound:
            await asyncio.sleep(0.01)
        assert pool.procs.busy == 0 and pool.procs.try_acquire()
        pool.procs.release()
        # and an answered request gives its slot back too
        assert pool.procs.try_acquire()
        assert await _in_slot(pool, lambda: 42) == 42
        assert pool.procs.busy == 0

    try:
        asyncio.run(main())
    finally:
        gate.set()
        pool.threads.shutdown(wait=True)
        pool.procs.close()


def test_a_failed_replacement_does_not_hide_the_querys_error(tmp_path, monkeypatch):
    """A query stopped past its time limit is killed and a spare process started in its
    place; when that start fails (no more processes, no memory), the caller still gets
    its QueryTimeout - before, the start's OSError replaced it."""
    procs = QueryProcesses(1, nice=19)
    limits = QueryLimits(timeout=60, threads=1, memory_limit="256MB")

    def job(sql: str) -> QueryJob:
        return QueryJob(
            store={"url": f"file://{tmp_path}"}, tables=(), limits=limits, sql=sql, max_rows=10
        )

    try:
        table, _ = procs.run(job("select 42 as x"), 30)  # a process, now idle in the pool
        assert table.to_pylist() == [{"x": 42}]
        monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python-here"))
        with pytest.raises(QueryTimeout, match="ran past the time limit"):
            procs.run(job("select count(*) from range(1000000000000) a"), 0.1)
        monkeypatch.undo()
        table, _ = procs.run(job("select 7 as y"), 30)  # the next query starts its own
        assert table.to_pylist() == [{"y": 7}]
    finally:
        procs.close()


def test_a_process_left_with_too_little_address_space_retires(tmp_path):
    """DuckDB's and Arrow's allocators keep the address space a large query mapped. A query
    process left with less spare address space than its resident bound retires after its
    answer, and the next query gets a fresh process. Seen in CI before: a timed-out cross
    join left a process with 2.8 of its 2.9 GB mapped, and the next query in it, an S3 read,
    died with 'bad allocation'. Here the slack is 128 MiB, and a sort of 6 million rows
    maps more than that."""
    limits = QueryLimits(timeout=60, threads=1, memory_limit="1GB")
    big = "SELECT count(*) AS n FROM (SELECT range AS r FROM range(6000000) ORDER BY random())"

    def pids(procs: QueryProcesses, sqls: list[str]) -> list[int]:
        seen = []
        for sql in sqls:
            job = QueryJob(
                store={"url": f"file://{tmp_path}"}, tables=(), limits=limits, sql=sql,
                max_rows=10,
            )  # fmt: skip
            table, _ = procs.run(job, 60)
            assert len(table.to_pylist()) == 1
            with procs._lock:
                (p,) = procs._free  # the process the query ran in, or its successor
                seen.append(p.popen.pid)
        return seen

    tight = QueryProcesses(1, nice=19, slack=128 * 2**20)
    try:
        a, b, c, d = pids(tight, ["SELECT 1", "SELECT 2", big, "SELECT 3"])
        assert a == b  # small queries: the process is kept and reused
        assert c != b  # after the big one it retired: a fresh process waits
        assert d == c
    finally:
        tight.close()
    roomy = QueryProcesses(1, nice=19)  # the default slack, 1.5 GiB
    try:
        a, b = pids(roomy, ["SELECT 1", big])
        assert a == b  # the same sort leaves enough room: kept
    finally:
        roomy.close()


def test_waiting_queries_take_the_slots_first_come_first_served():
    """Requests waiting for a slot get it in the order they came, and a newcomer does not
    overtake them (issue 15: before, each waiting request looked for a free slot every
    50 ms in no order, so under load some waited the whole NSDX_QUERY_QUEUE_WAIT and got
    503 QueryBusy while later ones ran). A slot given back by a query's thread wakes the
    first in line; the queue stays bounded (NSDX_QUERY_QUEUE), and a request whose wait
    runs out leaves it with a 503 without costing the others their place."""
    from nsdx.web.query import QueryBusy

    pool = _Pool(1)

    async def until(cond) -> None:
        bound = time.monotonic() + 30
        while not cond() and time.monotonic() < bound:
            await asyncio.sleep(0.01)
        assert cond()

    async def main() -> None:
        assert pool.procs.try_acquire()  # a running query holds the only slot
        got: list[str] = []

        async def request(name: str, wait: float = 60) -> None:
            await pool.take(wait, 3)
            got.append(name)

        waiting = []
        for name in "abc":
            waiting.append(asyncio.ensure_future(request(name)))
            await until(lambda: pool.waiting == len(waiting))
        with pytest.raises(QueryBusy):  # the queue (3) is full: refused at once
            await pool.take(60, 3)
        for n in range(1, 4):
            # the slot is given back by the thread that ran the query
            await asyncio.to_thread(pool.release)
            await until(lambda n=n: len(got) == n)
            # the new holder has it; a newcomer queues behind those still waiting
            assert pool.procs.busy == 1 and not pool.procs.try_acquire()
        assert got == ["a", "b", "c"] and pool.waiting == 0

        # a request that waits too long gets 503; the one behind it keeps its place
        short = asyncio.ensure_future(request("short", wait=0.05))
        await until(lambda: pool.waiting == 1)
        behind = asyncio.ensure_future(request("behind"))
        with pytest.raises(QueryBusy):
            await short
        assert pool.waiting == 1
        await asyncio.to_thread(pool.release)
        await behind
        assert got[-1] == "behind" and pool.procs.busy == 1
        pool.release()
        assert pool.procs.busy == 0 and pool.waiting == 0

    try:
        asyncio.run(main())
    finally:
        pool.threads.shutdown(wait=True)
        pool.procs.close()


def test_a_query_process_reuses_a_locked_connection_only_for_the_same_tables(tmp_path):
    """A query process keeps the locked connections of its last table sets (opening one
    was most of a small query's time) and reuses one only for a job over exactly the same
    tables: a job over other tables gets its own connection, which holds only its views
    and may open only its files, whatever the connection before it read. A connection
    whose query failed is closed, not kept."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from catalogue.errors import QueryError
    from catalogue.query import LockedConnections
    from catalogue.registry import PublishedTable

    objects = tmp_path / "objects"
    tables = {}
    for name, values in (("a", [1, 2, 3]), ("b", [10, 20])):
        key = f"org/{name}/v1/data/part-0.parquet"
        (objects / key).parent.mkdir(parents=True)
        pq.write_table(pa.table({"x": values}), objects / key)
        tables[name] = PublishedTable(
            dataset=name, domain="transport", table=None, uris=(key,), access="open",
            organization="org",
        )  # fmt: skip
    limits = QueryLimits(timeout=60, threads=1, memory_limit="256MB", temp_dir=tmp_path / "q")

    def job(names: str, sql: str) -> QueryJob:
        return QueryJob(
            store={"url": f"file://{objects}"}, tables=tuple(tables[n] for n in names),
            limits=limits, sql=sql, max_rows=10,
        )  # fmt: skip

    kept = LockedConnections(2)
    try:
        assert kept.run(job("a", "SELECT count(*) AS n FROM transport.a"))[0].to_pylist() == [
            {"n": 3}
        ]
        (first,) = [c for c, _tmp, _store in kept._kept.values()]
        assert kept.run(job("a", "SELECT sum(x) AS s FROM transport.a"))[0].to_pylist() == [
            {"s": 6}
        ]
        assert [c for c, _tmp, _store in kept._kept.values()] == [first]  # reused

        assert kept.run(job("b", "SELECT sum(x) AS s FROM transport.b"))[0].to_pylist() == [
            {"s": 30}
        ]
        assert len(kept) == 2
        # b's connection has no view of a and may not open a's file, though a's
        # connection was opened in the same process before it
        a_file = str(objects / tables["a"].uris[0])
        for sql in ("SELECT * FROM transport.a", f"SELECT * FROM read_parquet('{a_file}')"):
            with pytest.raises(QueryError):
                kept.run(job("b", sql))
        assert len(kept) == 1  # b's connection failed: closed, not kept
        assert kept.run(job("ab", "SELECT count(*) AS n FROM transport.a, transport.b"))[
            0
        ].to_pylist() == [{"n": 6}]
        assert len(kept) == 2
    finally:
        kept.clear()
    assert len(kept) == 0 and list((tmp_path / "q").iterdir()) == []  # temp folders gone
