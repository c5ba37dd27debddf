"""
Contended money transfers through @transactional, against the real servers.

Every workload starts with a *forced pair*: two transfers that meet at a barrier inside their
first attempt, so that the database must abort one of them (a deadlock at READ COMMITTED and on
MariaDB, a serialization failure at SERIALIZABLE). Then workers run random transfers between a
few accounts, locking them in random order. Afterwards: every balance is exactly what the plan
says (so the sum is unchanged and every transfer applied once), the ledger holds each transfer
id once, nothing gave up, retries really happened, and no connection is left checked out.
"""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections import Counter
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from tests.fix_db import url_for_driver
from txpolicy import ErrorCategory, RetryPolicy, transactional
from txpolicy._hooks import add_hook

ACCOUNTS = 4
INITIAL = 1_000
WORKERS = 6
PER_WORKER = 8
POLICY = RetryPolicy(attempts=50, wait_initial=0.002, wait_max=0.05, deadline=None)
BARRIER_TIMEOUT = 10.0


@dataclass(frozen=True)
class Transfer:
    """One planned transfer; *meet* marks the forced pair's barrier."""

    id: str
    src: int
    dst: int
    amount: int


def plan(seed: int) -> tuple[list[Transfer], list[list[Transfer]]]:
    """The forced pair (1→2 and 2→1), then per-worker lists of random transfers."""
    rng = random.Random(seed)
    pair = [Transfer(uuid.uuid4().hex, 1, 2, 7), Transfer(uuid.uuid4().hex, 2, 1, 5)]
    workers = []
    for _ in range(WORKERS):
        transfers = []
        for _ in range(PER_WORKER):
            src, dst = rng.sample(range(1, ACCOUNTS + 1), 2)
            transfers.append(Transfer(uuid.uuid4().hex, src, dst, rng.randint(1, 50)))
        workers.append(transfers)
    return pair, workers


def expected_balances(transfers: list[Transfer]) -> dict[int, int]:
    """What every account must hold if each transfer applied exactly once."""
    balances = dict.fromkeys(range(1, ACCOUNTS + 1), INITIAL)
    for transfer in transfers:
        balances[transfer.src] -= transfer.amount
        balances[transfer.dst] += transfer.amount
    return balances


class Tables:
    """The accounts and ledger tables of one test, with their statements."""

    def __init__(self, prefix: str) -> None:
        self.accounts = f"{prefix}_acc"
        self.ledger = f"{prefix}_ledger"
        self.read = sa.text(f"SELECT balance FROM {self.accounts} WHERE id IN (:a, :b)")
        self.debit = sa.text(
            f"UPDATE {self.accounts} SET balance = balance - :amount WHERE id = :id"
        )
        self.credit = sa.text(
            f"UPDATE {self.accounts} SET balance = balance + :amount WHERE id = :id"
        )
        self.record = sa.text(
            f"INSERT INTO {self.ledger} (id, src, dst, amount) VALUES (:id, :src, :dst, :amount)"
        )

    def create(self, engine: sa.Engine) -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                f"CREATE TABLE {self.accounts} (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)"
            )
            conn.exec_driver_sql(
                f"CREATE TABLE {self.ledger} (id VARCHAR(32) PRIMARY KEY, src INTEGER NOT NULL, "
                "dst INTEGER NOT NULL, amount INTEGER NOT NULL)"
            )
            conn.execute(
                sa.text(f"INSERT INTO {self.accounts} (id, balance) VALUES (:id, :balance)"),
                [{"id": i, "balance": INITIAL} for i in range(1, ACCOUNTS + 1)],
            )

    def drop(self, engine: sa.Engine) -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.ledger}")
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.accounts}")

    def state(self, engine: sa.Engine) -> tuple[dict[int, int], list[str]]:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT id, balance FROM {self.accounts}"))
            balances = {account: balance for account, balance in rows}
            ids = list(conn.execute(sa.text(f"SELECT id FROM {self.ledger}")).scalars())
        return balances, ids


@pytest.fixture
def outcomes():
    """Counts of retries per category and of give-ups, from the hooks."""
    counts: Counter[object] = Counter()

    def on_retry(record):
        counts[record.category] += 1

    def on_give_up(record):
        counts["give_up"] += 1

    removers = [add_hook("retry", on_retry), add_hook("give_up", on_give_up)]
    yield counts
    for remove in removers:
        remove()


def pause_statement(dialect: str) -> str:
    """A few milliseconds between the two updates, so that random transfers interleave."""
    return "SELECT pg_sleep(0.003)" if dialect == "postgresql" else "SELECT SLEEP(0.003)"


def check(tables: Tables, engine: sa.Engine, transfers, outcomes, category, pool) -> None:
    """The invariants every workload must keep."""
    balances, ids = tables.state(engine)

    assert expected_balances(transfers) == balances
    assert ACCOUNTS * INITIAL == sum(balances.values())
    assert sorted(t.id for t in transfers) == sorted(ids)
    assert 0 == outcomes["give_up"]
    assert outcomes[category] >= 1
    assert 0 == pool.checkedout()


# --- sync: threads ----------------------------------------------------------------------------

SYNC_WORKLOADS = [
    pytest.param("postgres", None, ErrorCategory.DEADLOCK, id="postgres-read-committed"),
    pytest.param("postgres", "SERIALIZABLE", ErrorCategory.SERIALIZATION, id="postgres-serializable"),
    pytest.param("mysql", None, ErrorCategory.DEADLOCK, id="mariadb-repeatable-read"),
]


def make_sync_engine(server: str, request) -> sa.Engine:
    """A pool big enough for every worker; PostgreSQL detects deadlocks after 20 ms."""
    url = request.getfixturevalue("postgres_url" if server == "postgres" else "mysql_url")
    engine = sa.create_engine(url, pool_size=WORKERS + 2, max_overflow=0)
    if server == "postgres":

        @sa.event.listens_for(engine, "connect")
        def fast_deadlocks(dbapi_connection, _record):
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET deadlock_timeout = '20ms'")
            dbapi_connection.commit()

    return engine


@pytest.mark.slow
@pytest.mark.parametrize(("server", "isolation", "category"), SYNC_WORKLOADS)
def test_contended_transfers_with_threads(request, outcomes, table_name, server, isolation, category):
    """Threads: real deadlocks / serialization failures are retried; every invariant holds."""
    engine = make_sync_engine(server, request)
    tables = Tables(table_name)
    tables.create(engine)
    barrier = threading.Barrier(2, timeout=BARRIER_TIMEOUT)
    pause = sa.text(pause_statement(engine.dialect.name))
    first_attempts: set[str] = set()

    @transactional(sessionmaker(engine), isolation_level=isolation, policy=POLICY)
    def transfer(session, t: Transfer, meet: bool) -> None:
        forced = meet and t.id not in first_attempts
        first_attempts.add(t.id)
        if isolation == "SERIALIZABLE":
            session.execute(tables.read, {"a": t.src, "b": t.dst})
            if forced:
                barrier.wait()
            low, high = sorted((t.src, t.dst))
            for account in (low, high):
                statement = tables.debit if account == t.src else tables.credit
                session.execute(statement, {"amount": t.amount, "id": account})
        else:
            session.execute(tables.debit, {"amount": t.amount, "id": t.src})
            if forced:
                barrier.wait()
            else:
                session.execute(pause)
            session.execute(tables.credit, {"amount": t.amount, "id": t.dst})
        session.execute(tables.record, {"id": t.id, "src": t.src, "dst": t.dst, "amount": t.amount})

    pair, workers = plan(seed=len(table_name))
    errors: list[BaseException] = []

    def run(transfers: list[Transfer], meet: bool) -> None:
        try:
            for t in transfers:
                transfer(t, meet)
        except BaseException as exc:
            errors.append(exc)

    try:
        for batch, meet in ([[t] for t in pair], True), (workers, False):
            threads = [threading.Thread(target=run, args=(ts, meet)) for ts in batch]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
        assert [] == errors
        check(tables, engine, pair + sum(workers, []), outcomes, category, engine.pool)
    finally:
        tables.drop(engine)
        engine.dispose()


# --- async: tasks -----------------------------------------------------------------------------


class AsyncBarrier:
    """A two-party barrier for tasks with a bounded wait (asyncio.Barrier is 3.11+)."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.event = asyncio.Event()

    async def wait(self) -> None:
        self.arrived += 1
        if self.arrived == self.parties:
            self.event.set()
        await asyncio.wait_for(self.event.wait(), BARRIER_TIMEOUT)


ASYNC_WORKLOADS = [
    pytest.param("postgresql+psycopg", None, ErrorCategory.DEADLOCK, id="psycopg-read-committed"),
    pytest.param(
        "postgresql+psycopg", "SERIALIZABLE", ErrorCategory.SERIALIZATION, id="psycopg-serializable"
    ),
    pytest.param("postgresql+asyncpg", None, ErrorCategory.DEADLOCK, id="asyncpg-read-committed"),
    pytest.param(
        "postgresql+asyncpg", "SERIALIZABLE", ErrorCategory.SERIALIZATION, id="asyncpg-serializable"
    ),
]


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.parametrize(("driver", "isolation", "category"), ASYNC_WORKLOADS)
async def test_contended_transfers_with_tasks(
    pg_engine, postgres_url, outcomes, table_name, driver, isolation, category
):
    """Tasks on psycopg (async) and asyncpg: the same workload and the same invariants."""
    engine = create_async_engine(
        url_for_driver(postgres_url, driver), pool_size=WORKERS + 2, max_overflow=0
    )

    @sa.event.listens_for(engine.sync_engine, "connect")
    def fast_deadlocks(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("SET deadlock_timeout = '20ms'")
        cursor.close()
        dbapi_connection.commit()

    tables = Tables(table_name)
    tables.create(pg_engine)
    barrier = AsyncBarrier(2)
    pause = sa.text(pause_statement("postgresql"))
    first_attempts: set[str] = set()

    @transactional(async_sessionmaker(engine), isolation_level=isolation, policy=POLICY)
    async def transfer(session, t: Transfer, meet: bool) -> None:
        forced = meet and t.id not in first_attempts
        first_attempts.add(t.id)
        if isolation == "SERIALIZABLE":
            await session.execute(tables.read, {"a": t.src, "b": t.dst})
            if forced:
                await barrier.wait()
            low, high = sorted((t.src, t.dst))
            for account in (low, high):
                statement = tables.debit if account == t.src else tables.credit
                await session.execute(statement, {"amount": t.amount, "id": account})
        else:
            await session.execute(tables.debit, {"amount": t.amount, "id": t.src})
            if forced:
                await barrier.wait()
            else:
                await session.execute(pause)
            await session.execute(tables.credit, {"amount": t.amount, "id": t.dst})
        await session.execute(
            tables.record, {"id": t.id, "src": t.src, "dst": t.dst, "amount": t.amount}
        )

    async def run(transfers: list[Transfer], meet: bool) -> None:
        for t in transfers:
            await transfer(t, meet)

    pair, workers = plan(seed=len(table_name) + 1)
    try:
        for batch, meet in ([[t] for t in pair], True), (workers, False):
            await asyncio.wait_for(asyncio.gather(*(run(ts, meet) for ts in batch)), 60)
        check(tables, pg_engine, pair + sum(workers, []), outcomes, category, engine.pool)
    finally:
        await engine.dispose()
        tables.drop(pg_engine)
