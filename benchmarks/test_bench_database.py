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

import pytest
import sqlalchemy as sa
from _support import RatioTable, create_counter_table, drop_table, postgres_url, unique_table
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
