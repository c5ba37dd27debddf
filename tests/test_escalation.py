"""
The starvation guard, ``RetryPolicy(escalate_after=k)``, against the real servers.

After *k* failed attempts a call's next attempts escalate: in the process they pass the bind's
gate alone (attempts of the same bind wait before BEGIN), and on PostgreSQL they take
``pg_advisory_xact_lock`` on the key derived from the URL, first thing in the transaction,
waiting for another holder in a transaction of their own so that their snapshot is fresh.

The first attempts of a call are made to fail with a real error: a *trap* row that a side
connection keeps locked, which the body reads with ``FOR UPDATE NOWAIT`` (PostgreSQL 55P03,
MariaDB 1205, both LOCK_TIMEOUT). Every engine URL carries its own ``application_name``, so
each test has its own advisory lock key and tests running elsewhere on the server cannot
interfere. Every wait on another thread is bounded by ``WAIT``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.fix_db import url_for_driver
import txpolicy
from txpolicy import (
    Database,
    ErrorCategory,
    RetryPolicy,
    TransientError,
    add_hook,
    transactional,
)
from txpolicy import _escalation
from txpolicy._escalation import NORMAL, Gate, gate_for, lock_key

WAIT = 10.0
NO_WAIT = {"wait_initial": 0.0, "wait_max": 0.0, "deadline": None}


# --- helpers ------------------------------------------------------------------------------------


class Worker(threading.Thread):
    """A thread whose result (or exception) the test collects with a bounded join."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        super().__init__(daemon=True)
        self.fn, self.args = fn, args
        self.result: Any = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.fn(*self.args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def outcome(self) -> Any:
        self.join(WAIT)
        assert not self.is_alive(), "worker thread did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def until(condition: Callable[[], object], what: str) -> None:
    """Poll *condition* until it holds, for at most WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def advisory_locks(engine: sa.Engine, key: int) -> list[tuple[int, bool, str]]:
    """(pid, granted, mode) of every advisory lock on the 64-bit *key*, seen from outside."""
    high, low = divmod(key & 0xFFFF_FFFF_FFFF_FFFF, 2**32)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT pid, granted, mode FROM pg_locks WHERE locktype = 'advisory'"
                " AND classid::bigint = :high AND objid::bigint = :low AND objsubid = 1"
                " ORDER BY granted DESC, pid"
            ),
            {"high": high, "low": low},
        )
        return [tuple(row) for row in rows]


def own_url(url: str) -> str:
    """*url* with an application_name of its own: a URL, and so an advisory key, per test."""
    return (
        make_url(url)
        .update_query_dict({"application_name": f"txp_esc_{uuid.uuid4().hex[:10]}"})
        .render_as_string(hide_password=False)
    )


class Trap:
    """A table with a counter row (id 1) and a trap row (id 0) a side connection keeps locked."""

    def __init__(self, engine: sa.Engine, table: str) -> None:
        self.engine, self.table = engine, table
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, v INTEGER)")
            conn.exec_driver_sql(f"INSERT INTO {table} (id, v) VALUES (0, 0), (1, 0)")
        self.side = engine.connect()
        self.side.exec_driver_sql(f"SELECT v FROM {table} WHERE id = 0 FOR UPDATE")
        self.nowait = f"SELECT v FROM {table} WHERE id = 0 FOR UPDATE NOWAIT"

    def spring(self, conn: Any) -> None:
        """A real lock failure (LOCK_TIMEOUT): the trap row is locked by the side connection."""
        conn.execute(sa.text(self.nowait))
        pytest.fail("the trap row should be locked")  # pragma: no cover

    def counter(self) -> int:
        with self.engine.connect() as conn:
            return conn.exec_driver_sql(f"SELECT v FROM {self.table} WHERE id = 1").scalar_one()

    def close(self) -> None:
        self.side.rollback()
        self.side.close()
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.table}")


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sa.Engine]:
    """A psycopg engine whose URL (and so escalation key) belongs to this test alone."""
    engine = sa.create_engine(own_url(postgres_url), pool_size=10, max_overflow=0)
    yield engine
    engine.dispose()


@pytest.fixture
def trap(engine: sa.Engine, table_name: str) -> Iterator[Trap]:
    trap = Trap(engine, table_name)
    yield trap
    trap.close()


def failing_first(trap: Trap, failures: int = 1) -> Callable[..., Any]:
    """A body that springs the trap on its first *failures* attempts, then bumps the counter."""

    def body(conn: Any, attempts: list[int]) -> int:
        attempts.append(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        if len(attempts) <= failures:
            trap.spring(conn)
        conn.exec_driver_sql(f"UPDATE {trap.table} SET v = v + 1 WHERE id = 1")
        return len(attempts)

    return body


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error"),
    [
        pytest.param(0, ValueError, id="zero"),
        pytest.param(-2, ValueError, id="negative"),
        pytest.param(2.0, TypeError, id="float"),
        pytest.param(True, TypeError, id="bool"),
    ],
)
def test_escalate_after_is_validated_when_the_policy_is_built(value: object, error: type) -> None:
    """escalate_after must be an int >= 1 (or None); anything else fails at construction."""
    with pytest.raises(error, match="escalate_after"):
        RetryPolicy(escalate_after=value)  # type: ignore[arg-type]


# --- the advisory lock on PostgreSQL ------------------------------------------------------------


def test_lock_key_is_per_database_url_whatever_the_driver_and_user() -> None:
    """Sync and async drivers, users and passwords share a key; another server, port, database
    or query string does not. The key is a signed 64-bit int (a PostgreSQL bigint)."""
    base = lock_key(make_url("postgresql+psycopg://app:secret@db1:5432/shop"))
    same = [
        "postgresql+asyncpg://other@db1:5432/shop",
        "postgresql://db1:5432/shop",
        "postgresql+psycopg2://app:changed@db1:5432/shop",
    ]
    different = [
        "postgresql+psycopg://app@db2:5432/shop",
        "postgresql+psycopg://app@db1:5433/shop",
        "postgresql+psycopg://app@db1:5432/stock",
        "postgresql+psycopg://app@db1:5432/shop?application_name=batch",
    ]

    assert [base] * len(same) == [lock_key(make_url(url)) for url in same]
    assert base not in [lock_key(make_url(url)) for url in different]
    assert -(2**63) <= base < 2**63


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_escalated_attempt_holds_the_advisory_lock_until_it_ends(
    engine: sa.Engine, trap: Trap, outcome: str
) -> None:
    """After escalate_after failures the next attempt holds pg_advisory_xact_lock on the bind's
    key while its body runs; COMMIT, or the ROLLBACK of a failed attempt, releases it."""
    key = lock_key(engine.url)
    inside, release = threading.Event(), threading.Event()
    body = failing_first(trap)

    @transactional(engine, policy=RetryPolicy(attempts=3, escalate_after=1, **NO_WAIT))
    def work(conn: sa.Connection, attempts: list[int]) -> int:
        done = body(conn, attempts)
        inside.set()
        assert release.wait(WAIT)
        if outcome == "rollback":
            raise KeyError("the application failed")
        return done

    attempts: list[int] = []
    worker = Worker(work, attempts)
    try:
        assert inside.wait(WAIT)
        held = advisory_locks(engine, key)
    finally:
        release.set()
    if outcome == "commit":
        assert 2 == worker.outcome()
    else:
        with pytest.raises(KeyError):
            worker.outcome()

    assert [(attempts[1], True, "ExclusiveLock")] == held
    assert [] == advisory_locks(engine, key)
    assert (1 if outcome == "commit" else 0) == trap.counter()


def test_the_retrying_block_escalates_too(engine: sa.Engine, trap: Trap) -> None:
    """``for attempt in attempts(...)``: the block's second attempt holds the lock."""
    key = lock_key(engine.url)
    seen: list[list[tuple[int, bool, str]]] = []
    pids: list[int] = []

    for attempt in txpolicy.attempts(
        engine, policy=RetryPolicy(attempts=3, escalate_after=1, **NO_WAIT)
    ):
        with attempt as conn:
            pids.append(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
            seen.append(advisory_locks(engine, key))
            if len(pids) == 1:
                trap.spring(conn)

    assert [[], [(pids[1], True, "ExclusiveLock")]] == seen
    assert [] == advisory_locks(engine, key)


def test_escalated_attempt_waits_for_another_holder_outside_its_snapshot(
    engine: sa.Engine, trap: Trap
) -> None:
    """While another process's escalated transaction holds the lock, an escalated SERIALIZABLE
    attempt waits in a transaction of its own; once the holder commits it runs on a fresh
    snapshot: it sees the holder's write and commits at its first try (no extra attempt)."""
    key = lock_key(engine.url)
    holder = engine.connect()
    try:
        holder.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        holder.exec_driver_sql(f"UPDATE {trap.table} SET v = 10 WHERE id = 1")
        body = failing_first(trap)

        @transactional(
            engine,
            policy=RetryPolicy(attempts=3, escalate_after=1, **NO_WAIT),
            isolation_level="SERIALIZABLE",
        )
        def work(conn: sa.Connection, attempts: list[int]) -> tuple[int, int]:
            seen = conn.exec_driver_sql(f"SELECT v FROM {trap.table} WHERE id = 1").scalar_one()
            return body(conn, attempts), seen

        attempts: list[int] = []
        worker = Worker(work, attempts)
        until(
            lambda: any(not granted for _, granted, _ in advisory_locks(engine, key)),
            "the escalated attempt to queue for the advisory lock",
        )
        holder.commit()
    finally:
        holder.close()

    assert (2, 10) == worker.outcome()
    assert 11 == trap.counter()
    assert [] == advisory_locks(engine, key)


# --- the in-process gate ------------------------------------------------------------------------


def test_escalated_attempts_run_one_at_a_time_and_before_new_attempts(
    engine: sa.Engine, trap: Trap
) -> None:
    """Two escalated calls of one bind run one after the other; a new call of the bind waits
    for both; a transaction from outside the bind (another process) is not held up."""
    policy = RetryPolicy(attempts=3, escalate_after=1, **NO_WAIT)
    entered: list[str] = []
    releases = {name: threading.Event() for name in ("a", "b", "new")}
    body = failing_first(trap)

    @transactional(engine, policy=policy)
    def escalated(conn: sa.Connection, name: str, attempts: list[int]) -> int:
        done = body(conn, attempts)
        entered.append(name)
        assert releases[name].wait(WAIT)
        return done

    @transactional(engine, policy=policy)
    def plain(conn: sa.Connection) -> None:
        entered.append("new")
        conn.exec_driver_sql("SELECT 1")

    gate = gate_for(engine)
    first = Worker(escalated, "a", [])
    until(lambda: entered == ["a"], "the first escalated attempt")
    second = Worker(escalated, "b", [])
    until(lambda: len(gate._queue) == 2, "the second escalated attempt to queue")
    newcomer = Worker(plain)
    try:
        with engine.begin() as outside:  # another process: not behind the gate
            outside.exec_driver_sql("SET LOCAL lock_timeout = '5s'")
            outside.exec_driver_sql(f"INSERT INTO {trap.table} (id, v) VALUES (2, 100)")
        assert not newcomer.join(0.2)
        assert ["a"] == entered
    finally:
        releases["a"].set()
    until(lambda: entered == ["a", "b"], "the second escalated attempt")
    assert not newcomer.join(0.2)
    assert ["a", "b"] == entered
    releases["b"].set()

    assert 2 == first.outcome()
    assert 2 == second.outcome()
    newcomer.outcome()
    assert ["a", "b", "new"] == entered
    assert 2 == trap.counter()


def test_nested_scope_inside_a_passed_gate_does_not_wait_for_a_queued_escalation(
    engine: sa.Engine, trap: Trap, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A requires_new scope inside an attempt that passed the gate does not queue behind an
    escalated attempt that waits for that very attempt to finish (that would never end)."""
    monkeypatch.setattr(_escalation, "PATIENCE", 60.0)  # a wrong wait would time out WAIT
    policy = RetryPolicy(attempts=3, escalate_after=1, **NO_WAIT)
    queued, inner_done = threading.Event(), threading.Event()
    body = failing_first(trap)

    @transactional(engine, policy=policy, propagation="requires_new")
    def inner(conn: sa.Connection) -> int:
        return conn.exec_driver_sql("SELECT 7").scalar_one()

    @transactional(engine, policy=policy)
    def outer(conn: sa.Connection) -> int:
        assert queued.wait(WAIT)
        result = inner()
        inner_done.set()
        return result

    @transactional(engine, policy=policy)
    def escalated(conn: sa.Connection, attempts: list[int]) -> int:
        return body(conn, attempts)

    gate = gate_for(engine)
    first = Worker(outer)
    until(lambda: gate._normal == 1, "the outer attempt to pass the gate")
    second = Worker(escalated, [])
    until(lambda: len(gate._queue) == 1, "the escalated attempt to queue")
    queued.set()

    assert inner_done.wait(WAIT)
    assert 7 == first.outcome()
    assert 2 == second.outcome()


def test_gate_lets_a_waiter_in_out_of_turn_after_its_patience(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A gate never waits for ever: an escalated attempt whose drain does not come goes in
    out of turn after PATIENCE, and so does a new attempt queued behind it."""
    monkeypatch.setattr(_escalation, "PATIENCE", 0.05)
    gate = Gate()
    stuck = gate.enter(escalated=False)  # an attempt that never finishes (deadlocked caller)

    ticket = gate.enter(escalated=True)
    late = gate.enter(escalated=False)

    assert NORMAL is stuck
    assert NORMAL is late
    assert ticket is not NORMAL
    for token in (stuck, ticket, late):
        gate.leave(token)
    assert (0, 0, 0) == (gate._normal, gate._escalated_inside, len(gate._queue))


def test_no_statement_is_added_unless_an_attempt_escalates(
    engine: sa.Engine, trap: Trap
) -> None:
    """With escalate_after set, attempts that do not escalate run exactly the statements they
    run without it: the guard costs nothing on the wire until it is needed."""
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))

    def body(conn: sa.Connection) -> None:
        conn.exec_driver_sql(f"UPDATE {trap.table} SET v = v + 1 WHERE id = 1")

    plain = transactional(engine, policy=RetryPolicy())(body)
    guarded = transactional(engine, policy=RetryPolicy(escalate_after=1))(body)

    plain()
    without = list(statements)
    statements.clear()
    guarded()

    assert without == statements
    assert not any("advisory" in sql for sql in without)


# --- counting and logging -----------------------------------------------------------------------


def test_escalations_are_counted_recorded_and_logged(
    postgres_url: str, trap: Trap, caplog: pytest.LogCaptureFixture
) -> None:
    """Each escalated attempt is one INFO record on txpolicy.retry, one escalation in the
    function's statistics and in Database.stats(), and escalated=True on its AttemptRecord."""
    caplog.set_level(logging.INFO, logger="txpolicy.retry")
    records: list[Any] = []
    removers = [add_hook(event, records.append) for event in ("retry", "success")]
    db = Database(own_url(postgres_url))
    body = failing_first(trap, failures=2)

    @db.transactional(policy=RetryPolicy(attempts=4, escalate_after=1, **NO_WAIT))
    def work(session: Any, attempts: list[int]) -> int:
        return body(session.connection(), attempts)

    try:
        result = work([])
        stats = db.stats()
    finally:
        for remove in removers:
            remove()
        db.close()

    escalations = [r for r in caplog.records if getattr(r, "txpolicy_event", "") == "escalate"]
    assert 3 == result
    assert [logging.INFO, logging.INFO] == [r.levelno for r in escalations]
    assert [2, 3] == [r.txpolicy_attempt for r in escalations]
    assert [("retry", 1, False), ("retry", 2, True), ("success", 3, True)] == [
        (r.event, r.attempt, r.escalated) for r in records if r.operation.endswith("work")
    ]
    assert 2 == work.statistics().escalations
    assert 2 == stats.escalations
    assert 2 == stats.retries_by_category[ErrorCategory.LOCK_TIMEOUT]


# --- other databases: the gate only -------------------------------------------------------------


def test_mariadb_escalated_attempt_runs_without_a_database_lock(
    mysql_url: str, table_name: str
) -> None:
    """On MariaDB/MySQL an escalated attempt takes no GET_LOCK (documented no-op): it runs its
    own statements only, and the call succeeds."""
    mysql = sa.create_engine(mysql_url)
    trap = Trap(mysql, table_name)
    statements: list[str] = []
    sa.event.listen(mysql, "before_cursor_execute", lambda *a: statements.append(a[2]))

    @transactional(mysql, policy=RetryPolicy(attempts=3, escalate_after=1, **NO_WAIT))
    def work(conn: sa.Connection, attempts: list[int]) -> int:
        attempts.append(1)
        if len(attempts) == 1:
            trap.spring(conn)
        statements.clear()
        conn.exec_driver_sql(f"UPDATE {trap.table} SET v = v + 1 WHERE id = 1")
        return len(attempts)

    try:
        assert 2 == work([])
        assert 1 == work.statistics().escalations
        assert [f"UPDATE {trap.table} SET v = v + 1 WHERE id = 1"] == statements
    finally:
        trap.close()
        mysql.dispose()


def test_sqlite_escalated_attempt_runs_without_a_database_lock(tmp_path: Any) -> None:
    """On SQLite (writers are serialised by the database) an escalated attempt is retried like
    any other, with no lock statement; the escalation is still counted."""
    path = tmp_path / "esc.db"
    sqlite = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    with sqlite.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1, 0)")
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # holds the write lock: "database is locked"
    statements: list[str] = []
    sa.event.listen(sqlite, "before_cursor_execute", lambda *a: statements.append(a[2]))

    @transactional(sqlite, policy=RetryPolicy(attempts=3, escalate_after=1, **NO_WAIT))
    def work(conn: sa.Connection, attempts: list[int]) -> int:
        attempts.append(1)
        if len(attempts) == 2:
            writer.execute("ROLLBACK")
        statements.clear()
        conn.exec_driver_sql("UPDATE t SET v = v + 1 WHERE id = 1")
        return len(attempts)

    try:
        assert 2 == work([])
        assert 1 == work.statistics().escalations
        assert ["UPDATE t SET v = v + 1 WHERE id = 1"] == statements
    finally:
        writer.close()
        sqlite.dispose()


# --- asyncio ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_escalated_attempt_waits_then_holds_the_lock(
    postgres_url: str, engine: sa.Engine, trap: Trap
) -> None:
    """asyncpg: an escalated attempt waits for another holder outside its snapshot, then holds
    the advisory lock of its URL's key and sees the holder's committed write."""
    # asyncpg takes no application_name in the URL: this test shares the plain URL's key.
    async_engine = create_async_engine(url_for_driver(postgres_url, "postgresql+asyncpg"))
    key = lock_key(async_engine.url)
    holder = engine.connect()
    holder.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    holder.exec_driver_sql(f"UPDATE {trap.table} SET v = 5 WHERE id = 1")

    @transactional(
        async_engine,
        policy=RetryPolicy(attempts=3, escalate_after=1, **NO_WAIT),
        isolation_level="REPEATABLE READ",
    )
    async def work(conn: Any, attempts: list[int]) -> tuple[int, int, list[Any]]:
        pid = (await conn.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one()
        attempts.append(pid)
        if len(attempts) == 1:
            await conn.exec_driver_sql(trap.nowait)
        seen = (await conn.exec_driver_sql(f"SELECT v FROM {trap.table} WHERE id = 1")).scalar()
        held = await asyncio.to_thread(advisory_locks, engine, key)
        return len(attempts), seen, held

    async def release_when_queued() -> None:
        deadline = time.monotonic() + WAIT
        while all(granted for _, granted, _ in await asyncio.to_thread(advisory_locks, engine, key)):
            assert time.monotonic() < deadline, "the escalated attempt never queued"
            await asyncio.sleep(0.01)
        await asyncio.to_thread(holder.commit)

    attempts: list[int] = []
    try:
        (count, seen, held), _ = await asyncio.wait_for(
            asyncio.gather(work(attempts), release_when_queued()), WAIT
        )
    finally:
        holder.close()
        await async_engine.dispose()

    assert (2, 5) == (count, seen)
    assert [(attempts[1], True, "ExclusiveLock")] == held
    assert [] == advisory_locks(engine, key)


# --- a contended TPC-B-like workload --------------------------------------------------------------

THREADS = 8


class Bank:
    """pgbench's TPC-B tables, small: one branch, 10 tellers, 1,000 accounts, a history."""

    def __init__(self, engine: sa.Engine, prefix: str) -> None:
        self.engine, self.prefix = engine, prefix
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE {prefix}_b (bid INT PRIMARY KEY, bbalance INT)")
            conn.exec_driver_sql(f"CREATE TABLE {prefix}_t (tid INT PRIMARY KEY, tbalance INT)")
            conn.exec_driver_sql(f"CREATE TABLE {prefix}_a (aid INT PRIMARY KEY, abalance INT)")
            conn.exec_driver_sql(f"CREATE TABLE {prefix}_h (tid INT, aid INT, delta INT)")
            conn.exec_driver_sql(f"INSERT INTO {prefix}_b VALUES (1, 0)")
            conn.exec_driver_sql(f"INSERT INTO {prefix}_t SELECT g, 0 FROM generate_series(1, 10) g")
            conn.exec_driver_sql(
                f"INSERT INTO {prefix}_a SELECT g, 0 FROM generate_series(1, 1000) g"
            )
        self.statements = [
            sa.text(f"UPDATE {prefix}_a SET abalance = abalance + :delta WHERE aid = :aid"),
            sa.text(f"SELECT abalance FROM {prefix}_a WHERE aid = :aid"),
            sa.text(f"UPDATE {prefix}_t SET tbalance = tbalance + :delta WHERE tid = :tid"),
            sa.text(f"UPDATE {prefix}_b SET bbalance = bbalance + :delta WHERE bid = 1"),
            sa.text(f"INSERT INTO {prefix}_h VALUES (:tid, :aid, :delta)"),
        ]

    def tpcb(self, conn: sa.Connection, params: dict[str, int]) -> None:
        for statement in self.statements:
            conn.execute(statement, params)

    def totals(self) -> tuple[int, ...]:
        p = self.prefix
        with self.engine.connect() as conn:
            return tuple(
                conn.exec_driver_sql(sql).scalar_one()
                for sql in (
                    f"SELECT coalesce(sum(abalance), 0) FROM {p}_a",
                    f"SELECT coalesce(sum(tbalance), 0) FROM {p}_t",
                    f"SELECT coalesce(sum(bbalance), 0) FROM {p}_b",
                    f"SELECT coalesce(sum(delta), 0) FROM {p}_h",
                    f"SELECT count(*) FROM {p}_h",
                )
            )

    def drop(self) -> None:
        with self.engine.begin() as conn:
            for suffix in ("b", "t", "a", "h"):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.prefix}_{suffix}")

    def run(self, policy: RetryPolicy, calls: int, *, stop_at_first_give_up: bool) -> dict[str, int]:
        """*calls* TPC-B transactions per thread; what committed and what gave up."""
        work = transactional(self.engine, policy=policy, isolation_level="SERIALIZABLE")(self.tpcb)
        lock = threading.Lock()
        tally = {"committed": 0, "delta": 0, "exhausted": 0}
        stop = threading.Event()

        def thread(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(calls):
                if stop.is_set():
                    return
                params = {
                    "aid": rng.randint(1, 1000),
                    "tid": rng.randint(1, 10),
                    "delta": rng.randint(-5000, 5000),
                }
                try:
                    work(params)
                except TransientError:
                    with lock:
                        tally["exhausted"] += 1
                    if stop_at_first_give_up:
                        stop.set()
                else:
                    with lock:
                        tally["committed"] += 1
                        tally["delta"] += params["delta"]

        workers = [Worker(thread, seed) for seed in range(THREADS)]
        for worker in workers:
            worker.join(60)
            worker.outcome()
        tally["escalations"] = work.statistics().escalations  # type: ignore[attr-defined]
        return tally


@pytest.fixture
def bank(postgres_url: str, table_name: str) -> Iterator[Bank]:
    engine = sa.create_engine(own_url(postgres_url), pool_size=THREADS + 2, max_overflow=0)
    bank = Bank(engine, table_name)
    yield bank
    bank.drop()
    engine.dispose()


def test_escalation_prevents_exhaustion_on_a_contended_tpcb_workload(bank: Bank) -> None:
    """Eight threads run TPC-B transactions on one branch at SERIALIZABLE with two attempts and
    no backoff: without the guard some calls lose both attempts; with escalate_after=1 the
    second attempt runs alone and none does. Every committed transaction applied exactly once."""
    tight = RetryPolicy(attempts=2, **NO_WAIT)

    unguarded = bank.run(tight, 60, stop_at_first_give_up=True)
    before = bank.totals()
    guarded = bank.run(RetryPolicy(attempts=2, escalate_after=1, **NO_WAIT), 40, stop_at_first_give_up=False)
    after = bank.totals()

    assert unguarded["exhausted"] >= 1, "the workload was not contended enough to test anything"
    assert 0 == guarded["exhausted"]
    assert THREADS * 40 == guarded["committed"]
    assert guarded["escalations"] > 0
    moved = guarded["delta"]
    assert (moved, moved, moved, moved, THREADS * 40) == tuple(
        a - b for a, b in zip(after, before, strict=True)
    )
    assert unguarded["delta"] == before[0] == before[3]
