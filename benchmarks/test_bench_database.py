"""
What ``Database`` adds per transaction: session tracking and user-context binding.

The baseline is the bare ``transactional(sessionmaker)`` path, with the same session options
and the same body (one read by primary key, nothing fails). The database sides run on an
engine of their own, identical to the baseline's, because the database's pool listeners
(exact checked-out counts, exhaustion warnings) are part of what it costs. Sides:

- ``sessionmaker``: ``@transactional(sessionmaker(engine))``, the baseline.
- ``sessionmaker_set_config`` (PostgreSQL only): the baseline whose body first runs the same
  ``set_config`` statement by hand -- what an application would write without txpolicy. The
  difference between this side and ``database_context`` is txpolicy's own cost; the
  difference between it and the baseline is the price of the extra round trip.
- ``database``: ``@db.transactional()`` on ``Database(engine)``, no context bound (on
  PostgreSQL it still runs ``set_config`` with empty values, as the contract requires).
- ``database_context``: the same, called inside ``user_context(UserContext(...))``.

On SQLite there is no statement to run, so the ratio is the pure Python cost of tracking.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
import sqlalchemy as sa
from _support import (
    RatioTable,
    create_counter_table,
    drop_table,
    emit_lines,
    postgres_url,
    unique_table,
)
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

import txpolicy
from txpolicy import AsyncDatabase, Database, UserContext, user_context

SQLITE = "database-sqlite-sync"
PG_SYNC = "database-postgres-sync"
PG_ASYNC = "database-postgres-async"
CONTEXT = UserContext("user-42", tenant_id="tenant-7")
SET_CONFIG = sa.text(
    "SELECT set_config('txpolicy.user_id', :u, true), set_config('txpolicy.tenant_id', :t, true)"
)
WARMUP = 50


@pytest.fixture(scope="module")
def ratios(request):
    table = RatioTable("Database tracking and user context vs transactional(sessionmaker)")
    yield table
    table.emit(request.config)


def sync_sides(engine, watched_engine, statement, *, postgres: bool):
    """The baseline sides on *engine*; the Database sides on its twin *watched_engine*."""
    factory = sessionmaker(engine, expire_on_commit=False)
    database = Database(watched_engine)

    def body(session):
        return session.execute(statement).scalar_one()

    def by_hand(session):
        session.execute(SET_CONFIG, {"u": "user-42", "t": "tenant-7"})
        return body(session)

    tracked = database.transactional()(body)

    def with_context():
        with user_context(CONTEXT):
            return tracked()

    sides = {
        "sessionmaker": txpolicy.transactional(factory)(body),
        "database": tracked,
        "database_context": with_context,
    }
    if postgres:
        sides["sessionmaker_set_config"] = txpolicy.transactional(factory)(by_hand)
    for call in sides.values():
        for _ in range(WARMUP):
            call()
    return database, sides


@pytest.fixture(scope="module")
def sqlite_calls():
    # In-memory: one database per engine (and per thread), so each twin gets the table.
    engines = [sa.create_engine("sqlite://") for _ in range(2)]
    for engine in engines:
        with engine.begin() as conn:
            create_counter_table(conn, "counter")
    statement = sa.text("SELECT n FROM counter WHERE id = 1")
    database, sides = sync_sides(*engines, statement, postgres=False)
    yield sides
    database.close()
    for engine in engines:
        engine.dispose()


@pytest.fixture(scope="module")
def pg():
    engine = sa.create_engine(postgres_url(), pool_size=2)
    name = unique_table()
    with engine.begin() as conn:
        create_counter_table(conn, name)
    yield engine, sa.text(f"SELECT n FROM {name} WHERE id = 1")
    drop_table(engine, name)
    engine.dispose()


@pytest.fixture(scope="module")
def pg_sync_calls(pg):
    engine, statement = pg
    watched = sa.create_engine(postgres_url(), pool_size=2)
    database, sides = sync_sides(engine, watched, statement, postgres=True)
    yield sides
    database.close()
    watched.dispose()


@pytest.fixture(scope="module")
def pg_async_calls(pg):
    _, statement = pg
    loop = asyncio.new_event_loop()
    engine = create_async_engine(postgres_url(), pool_size=2)
    watched = create_async_engine(postgres_url(), pool_size=2)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    database = AsyncDatabase(watched)

    async def body(session):
        return (await session.execute(statement)).scalar_one()

    async def by_hand(session):
        await session.execute(SET_CONFIG, {"u": "user-42", "t": "tenant-7"})
        return await body(session)

    tracked = database.transactional()(body)

    async def with_context():
        with user_context(CONTEXT):
            return await tracked()

    sides = {
        "sessionmaker": txpolicy.transactional(factory)(body),
        "sessionmaker_set_config": txpolicy.transactional(factory)(by_hand),
        "database": tracked,
        "database_context": with_context,
    }
    for call in sides.values():
        for _ in range(WARMUP):
            loop.run_until_complete(call())
    yield loop, sides
    loop.run_until_complete(database.aclose())
    loop.run_until_complete(watched.dispose())
    loop.run_until_complete(engine.dispose())
    loop.close()


@pytest.mark.benchmark(group=SQLITE)
@pytest.mark.parametrize("side", ["sessionmaker", "database", "database_context"])
def test_sqlite_sync(benchmark, sqlite_calls, ratios, side):
    """SQLite in-memory: the pure Python cost of tracking (no context statement to run)."""
    benchmark.name = f"{side}_sqlite"
    result = benchmark(sqlite_calls[side])

    assert 0 == result
    ratios.add(benchmark, "sessionmaker_sqlite")


@pytest.mark.benchmark(group=PG_SYNC)
@pytest.mark.parametrize(
    "side", ["sessionmaker", "sessionmaker_set_config", "database", "database_context"]
)
def test_postgres_sync(benchmark, pg_sync_calls, ratios, side):
    """PostgreSQL (psycopg 3): tracking plus the set_config round trip."""
    benchmark.name = f"{side}_postgres_sync"
    result = benchmark(pg_sync_calls[side])

    assert 0 == result
    ratios.add(benchmark, "sessionmaker_postgres_sync")


@pytest.mark.benchmark(group=PG_ASYNC)
@pytest.mark.parametrize(
    "side", ["sessionmaker", "sessionmaker_set_config", "database", "database_context"]
)
def test_postgres_async(benchmark, pg_async_calls, ratios, side):
    """PostgreSQL (psycopg 3 async): the same through AsyncDatabase."""
    loop, sides = pg_async_calls
    call = sides[side]
    benchmark.name = f"{side}_postgres_async"
    result = benchmark(lambda: loop.run_until_complete(call()))

    assert 0 == result
    ratios.add(benchmark, "sessionmaker_postgres_async")


def interleaved(sides, *, rounds, batch):
    """
    Median per-call cost of each side and median ratio to the first side, measured in
    alternating batches so that load from other processes hits every side alike. Both wall
    time and this process's CPU time are reported (CPU time ignores waiting for the server).
    """
    names = list(sides)
    samples = {name: {"wall": [], "cpu": []} for name in names}
    for number in range(rounds):
        for name in names if number % 2 else names[::-1]:
            call = sides[name]
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(batch):
                call()
            samples[name]["wall"].append((time.perf_counter() - wall) / batch)
            samples[name]["cpu"].append((time.process_time() - cpu) / batch)
    base = samples[names[0]]
    out = {}
    for name in names:
        row = {}
        for clock in ("wall", "cpu"):
            ratios = [a / b for a, b in zip(samples[name][clock], base[clock]) if b]
            row[clock] = (statistics.median(samples[name][clock]), statistics.median(ratios))
        out[name] = row
    return out


@pytest.mark.benchmark(group="database-interleaved")
def test_interleaved_overhead(benchmark, sqlite_calls, pg_sync_calls, request):
    """The same comparisons, interleaved batch by batch: the figures to quote (noisy hosts)."""
    results = {}

    def run():
        results["sqlite"] = interleaved(sqlite_calls, rounds=100, batch=100)
        results["postgres"] = interleaved(
            {
                name: pg_sync_calls[name]
                for name in ("sessionmaker", "sessionmaker_set_config", "database", "database_context")
            },
            rounds=40,
            batch=50,
        )

    benchmark.pedantic(run, rounds=1, iterations=1)
    lines = ["Database overhead, interleaved batches: median per call (ratio to transactional(sessionmaker))"]
    for group, rows in results.items():
        lines.append(f"  [{group}]")
        for name, row in rows.items():
            wall, cpu = row["wall"], row["cpu"]
            lines.append(
                f"    {name:<26} wall {wall[0] * 1e6:8.1f} µs ({wall[1]:.3f})"
                f"   cpu {cpu[0] * 1e6:8.1f} µs ({cpu[1]:.3f})"
            )
            benchmark.extra_info[f"{group}.{name}.wall_ratio"] = round(wall[1], 4)
            benchmark.extra_info[f"{group}.{name}.cpu_ratio"] = round(cpu[1], 4)
    emit_lines(request.config, lines)
