"""
Server-side faults while a transfer workload runs through ``transactional()``.

- PostgreSQL: a killer thread terminates random backends of the workload
  (``pg_terminate_backend``, a bounded number of kills, only this test's own backends, found
  by a unique ``application_name``).
- MariaDB: a killer thread ``KILL``\\ s random connections of the workload (only the ids this
  test's engine opened).
- PostgreSQL timeouts expiring inside attempts: ``idle_in_transaction_session_timeout``
  (FATAL ``25P03``: the session ends, the attempt is retried on a fresh connection) and
  ``statement_timeout`` (``57014``: not retried by default; retried when the policy says so).

Invariants after every run: no committed transfer lost, none applied twice, every ambiguous
outcome surfaced as ``CommitUnknownError``, no connection checked out, no session tracked. The
number of faults injected is printed (``-s``) and recorded as a junit property.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import attrs
import pytest
import sqlalchemy as sa

import txpolicy
from tests.harness.workload import Bank, Outcomes, run_threads
from txpolicy import CommitUnknownError, Database, ErrorCategory, RetryPolicy

POLICY = RetryPolicy(attempts=20, wait_initial=0.005, wait_max=0.05, deadline=30)
MAX_KILLS = 12


def _report(record_property, name: str, value: object) -> None:
    """Make a figure visible with -s and in the junit XML."""
    print(f"[faults] {name}: {value}")
    record_property(name, value)


class Killer:
    """
    A thread that kills one of the workload's connections every few milliseconds.

    ``victims()`` lists the ids it may kill; ``kill(id)`` returns whether a connection died.
    At most *limit* kills; every wait is bounded (an Event with a timeout).
    """

    def __init__(
        self, victims: Callable[[], list[int]], kill: Callable[[int], bool], *, limit: int, seed: int
    ) -> None:
        self.victims, self.kill, self.limit = victims, kill, limit
        self.rng = random.Random(seed)
        self.kills = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="killer")
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            while self.kills < self.limit and not self.stop.wait(self.rng.uniform(0.01, 0.04)):
                candidates = self.victims()
                if candidates and self.kill(self.rng.choice(candidates)):
                    self.kills += 1
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Killer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


def _run_workload(db, bank: Bank, *, threads: int, per_thread: int) -> tuple[Outcomes, list[CommitUnknownError]]:
    transfer = txpolicy.transactional(db)(bank.transfer)
    outcomes = Outcomes()
    unknown: list[CommitUnknownError] = []

    def worker(index: int) -> None:
        rng = random.Random(index)
        for _ in range(per_thread):
            transfer_id, src, dst, amount = bank.new_transfer(rng)
            try:
                transfer(transfer_id, src, dst, amount)
            except CommitUnknownError as exc:
                unknown.append(exc)
                outcomes.record(transfer_id, exc)
            except Exception as exc:
                outcomes.record(transfer_id, exc)
            else:
                outcomes.record(transfer_id, None)

    run_threads(worker, threads=threads)
    return outcomes, unknown


# -- PostgreSQL: pg_terminate_backend ---------------------------------------------------------


@pytest.fixture
def pg_bank(pg_engine: sa.Engine) -> Iterator[Bank]:
    """Accounts and ledger on the PostgreSQL test server."""
    bank = Bank(pg_engine, accounts=8)
    yield bank
    bank.drop()


@pytest.mark.postgres
def test_pg_terminate_backend_during_workload(postgres_url, pg_engine, pg_bank, record_property):
    """Random backends terminated mid-workload: retried on fresh connections, nothing lost or doubled."""
    tag = f"txp_kill_{uuid.uuid4().hex[:10]}"
    url = sa.make_url(postgres_url).update_query_dict({"application_name": tag})
    db = Database(url, pool_size=4, max_overflow=0, policy=POLICY)

    def victims() -> list[int]:
        with pg_engine.connect() as conn:
            return list(conn.execute(
                sa.text("SELECT pid FROM pg_stat_activity WHERE application_name = :tag"), {"tag": tag}
            ).scalars())

    def kill(pid: int) -> bool:
        with pg_engine.connect() as conn:
            return bool(conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar())

    try:
        with Killer(victims, kill, limit=MAX_KILLS, seed=1) as killer:
            outcomes, unknown = _run_workload(db, pg_bank, threads=4, per_thread=40)
        stats = db.stats()
    finally:
        db.close()
    audit = pg_bank.audit(outcomes)
    _report(record_property, "pg_backends_terminated", killer.kills)
    _report(record_property, "outcomes", {"ok": len(outcomes.ok), "unknown": len(outcomes.unknown), "failed": len(outcomes.failed)})
    _report(record_property, "retries", {c.value: n for c, n in stats.retries_by_category.items() if n})

    assert killer.kills >= 1
    assert audit.holds, audit
    assert {} == outcomes.failed
    assert all(e.during_commit for e in unknown)
    # Every kill is seen by at most one call: as a retry, as an ambiguous commit, or not at all
    # (a connection killed while idle in the pool and already replaced).
    assert stats.retries_by_category[ErrorCategory.CONNECTION] + len(unknown) <= killer.kills
    assert (0, 0) == (stats.active_sessions_count, stats.engines["primary"].checked_out)


# -- MariaDB: KILL ----------------------------------------------------------------------------


@pytest.fixture
def mysql_bank(mysql_engine: sa.Engine) -> Iterator[Bank]:
    """Accounts and ledger on the MariaDB test server."""
    bank = Bank(mysql_engine, accounts=8)
    yield bank
    bank.drop()


@pytest.mark.mysql
def test_mariadb_kill_during_workload(mysql_url, mysql_engine, mysql_bank, record_property):
    """Random connections KILLed mid-workload: retried on fresh connections, nothing lost or doubled."""
    engine = sa.create_engine(mysql_url, pool_size=4, max_overflow=0)
    ours: set[int] = set()
    lock = threading.Lock()

    @sa.event.listens_for(engine, "connect")
    def remember(dbapi_connection, _record):
        with lock:
            ours.add(dbapi_connection.thread_id())

    def victims() -> list[int]:
        with mysql_engine.connect() as conn:
            alive = set(conn.execute(sa.text("SELECT id FROM information_schema.processlist")).scalars())
        with lock:
            return sorted(ours & alive)

    def kill(thread_id: int) -> bool:
        try:
            with mysql_engine.connect() as conn:
                conn.execute(sa.text(f"KILL {int(thread_id)}"))
        except sa.exc.DBAPIError:
            return False  # it had already gone
        return True

    db = Database(engine, policy=POLICY)
    try:
        with Killer(victims, kill, limit=MAX_KILLS, seed=2) as killer:
            outcomes, unknown = _run_workload(db, mysql_bank, threads=4, per_thread=40)
        stats = db.stats()
        checked_out = engine.pool.checkedout()
    finally:
        db.close()
        engine.dispose()
    audit = mysql_bank.audit(outcomes)
    _report(record_property, "mariadb_connections_killed", killer.kills)
    _report(record_property, "outcomes", {"ok": len(outcomes.ok), "unknown": len(outcomes.unknown), "failed": len(outcomes.failed)})
    _report(record_property, "retries", {c.value: n for c, n in stats.retries_by_category.items() if n})

    assert killer.kills >= 1
    assert audit.holds, audit
    assert {} == outcomes.failed
    assert all(e.during_commit for e in unknown)
    assert stats.retries_by_category[ErrorCategory.CONNECTION] + len(unknown) <= killer.kills
    assert (0, 0) == (stats.active_sessions_count, checked_out)


# -- PostgreSQL: timeouts inside attempts -----------------------------------------------------


@pytest.fixture
def pg_db(postgres_url) -> Iterator[Database]:
    """A small Database on the PostgreSQL test server."""
    db = Database(postgres_url, pool_size=2, max_overflow=0, policy=POLICY)
    yield db
    db.close()


def _wait_backend_gone(engine: sa.Engine, pid: int, timeout: float = 10.0) -> None:
    """Poll pg_stat_activity until *pid* has left (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            gone = conn.execute(
                sa.text("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            ).scalar()
        if gone:
            return
        time.sleep(0.02)
    raise AssertionError(f"backend {pid} still alive after {timeout} s")


def _idle_out(session, engine: sa.Engine) -> None:
    """Arm a 50 ms idle-in-transaction timeout on this attempt and wait until it kills the session."""
    session.execute(sa.text("SET LOCAL idle_in_transaction_session_timeout = '50ms'"))
    pid = session.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    _wait_backend_gone(engine, pid)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "where",
    [
        pytest.param("before_body", id="before_body"),
        pytest.param("before_commit", id="before_commit"),
    ],
)
def test_idle_in_transaction_timeout_is_retried_on_a_fresh_connection(pg_db, pg_engine, pg_bank, where, record_property):
    """FATAL 25P03 ends the session: the attempt is retried on a new connection and applied once."""
    calls = []

    @txpolicy.transactional(pg_db)
    def transfer(session, transfer_id, src, dst, amount):
        calls.append(session.execute(sa.text("SELECT pg_backend_pid()")).scalar())
        if len(calls) == 1 and where == "before_body":
            _idle_out(session, pg_engine)
        pg_bank.transfer(session, transfer_id, src, dst, amount)
        if len(calls) == 1 and where == "before_commit":
            _idle_out(session, pg_engine)

    outcomes = Outcomes()
    transfer_id, src, dst, amount = pg_bank.new_transfer(random.Random(5))
    transfer(transfer_id, src, dst, amount)
    outcomes.record(transfer_id, None)
    stats = pg_db.stats()
    audit = pg_bank.audit(outcomes)
    _report(record_property, "idle_in_transaction_timeouts", 1)

    assert audit.holds, audit
    assert 1 == audit.ledger_rows
    assert 2 == len(calls)
    assert calls[0] != calls[1]
    assert 1 == stats.retries_by_category[ErrorCategory.CONNECTION]
    assert (0, 0) == (stats.active_sessions_count, stats.engines["primary"].checked_out)


@pytest.mark.postgres
def test_statement_timeout_is_not_retried_by_default(pg_db, pg_bank, record_property):
    """A statement_timeout expiring inside the attempt raises TimeoutError after one attempt; nothing applied."""
    calls = []

    @txpolicy.transactional(pg_db, statement_timeout=0.05)
    def transfer(session, transfer_id, src, dst, amount):
        calls.append(1)
        pg_bank.transfer(session, transfer_id, src, dst, amount)
        session.execute(sa.text("SELECT pg_sleep(5)"))

    transfer_id, src, dst, amount = pg_bank.new_transfer(random.Random(6))
    outcomes = Outcomes()
    with pytest.raises(TimeoutError) as info:  # builtins.TimeoutError catches it too
        transfer(transfer_id, src, dst, amount)
    outcomes.record(transfer_id, info.value)
    stats = pg_db.stats()
    audit = pg_bank.audit(outcomes)
    _report(record_property, "statement_timeouts", len(calls))

    assert isinstance(info.value, txpolicy.TimeoutError)
    assert ("57014", 1, 1) == (info.value.sqlstate, info.value.attempts, len(calls))
    assert audit.holds, audit
    assert 0 == audit.ledger_rows
    assert (0, 0) == (stats.active_sessions_count, stats.engines["primary"].checked_out)


@pytest.mark.postgres
def test_statement_timeout_retried_when_the_policy_says_so(pg_db, pg_bank, record_property):
    """With STATEMENT_TIMEOUT in retry_on, an attempt that timed out is re-run and applied once."""
    policy = attrs.evolve(POLICY, retry_on=POLICY.retry_on | {ErrorCategory.STATEMENT_TIMEOUT})
    calls = []

    @txpolicy.transactional(pg_db, policy=policy, statement_timeout=0.05)
    def transfer(session, transfer_id, src, dst, amount):
        calls.append(1)
        pg_bank.transfer(session, transfer_id, src, dst, amount)
        if len(calls) < 3:
            session.execute(sa.text("SELECT pg_sleep(5)"))

    transfer_id, src, dst, amount = pg_bank.new_transfer(random.Random(7))
    outcomes = Outcomes()
    transfer(transfer_id, src, dst, amount)
    outcomes.record(transfer_id, None)
    stats = pg_db.stats()
    audit = pg_bank.audit(outcomes)
    _report(record_property, "statement_timeouts", len(calls) - 1)

    assert audit.holds, audit
    assert (3, 1) == (len(calls), audit.ledger_rows)
    assert 2 == stats.retries_by_category[ErrorCategory.STATEMENT_TIMEOUT]
    assert (0, 0) == (stats.active_sessions_count, stats.engines["primary"].checked_out)
