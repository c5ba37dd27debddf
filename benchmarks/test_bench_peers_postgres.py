"""
The happy path on PostgreSQL (psycopg 3), sync and async.

One read by primary key in a transaction, nothing fails. Side by side: bare
``sessionmaker.begin()`` (the baseline), ``@transactional``, and the same body in
tenacity ``@retry``, stamina ``@retry`` and backoff ``on_exception`` wrappers (all three
configured like txpolicy's default policy: 5 attempts, full jitter from 50 ms, 2 s cap).
Async runs each call through ``loop.run_until_complete`` (~9 µs, the same for every side).
"""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from _support import (
    RatioTable,
    async_sides,
    create_counter_table,
    drop_table,
    postgres_url,
    sync_sides,
    unique_table,
)

SYNC = "happy-postgres-sync"
ASYNC = "happy-postgres-async"
SIDES = ["bare", "transactional", "tenacity", "stamina", "backoff"]


@pytest.fixture(scope="module")
def ratios(request):
    table = RatioTable("happy path on PostgreSQL")
    yield table
    table.emit(request.config)


@pytest.fixture(scope="module")
def pg():
    engine = sa.create_engine(postgres_url())
    name = unique_table()
    with engine.begin() as conn:
        create_counter_table(conn, name)
    yield engine, sa.text(f"SELECT n FROM {name} WHERE id = 1")
    drop_table(engine, name)
    engine.dispose()


@pytest.fixture(scope="module")
def sync_calls(pg):
    engine, statement = pg
    sides = sync_sides(sessionmaker(engine), statement)
    for call in sides.values():  # warm the pool and SQLAlchemy's statement cache
        for _ in range(20):
            call()
    return sides


@pytest.fixture(scope="module")
def async_calls(pg):
    _, statement = pg
    loop = asyncio.new_event_loop()
    engine = create_async_engine(postgres_url())
    sides = async_sides(async_sessionmaker(engine), statement)
    for call in sides.values():
        for _ in range(20):
            loop.run_until_complete(call())
    yield loop, sides
    loop.run_until_complete(engine.dispose())
    loop.close()


@pytest.mark.benchmark(group=SYNC, warmup=True)
@pytest.mark.parametrize("side", SIDES)
def test_postgres_sync(benchmark, sync_calls, ratios, side):
    """One read-only transaction through each wrapper; every side returns the same row."""
    benchmark.name = f"{side}_postgres_sync"
    result = benchmark(sync_calls[side])

    assert 0 == result
    ratios.add(benchmark, "bare_postgres_sync")


@pytest.mark.benchmark(group=ASYNC, warmup=True)
@pytest.mark.parametrize("side", SIDES)
def test_postgres_async(benchmark, async_calls, ratios, side):
    """The same transaction through each async wrapper (psycopg's async mode)."""
    loop, sides = async_calls
    call = sides[side]
    benchmark.name = f"{side}_postgres_async"
    result = benchmark(lambda: loop.run_until_complete(call()))

    assert 0 == result
    ratios.add(benchmark, "bare_postgres_async")


@pytest.mark.benchmark(group="happy-postgres-interleaved")
def test_postgres_interleaved(benchmark, sync_calls, ratios):
    """Every side again, taking turns in rounds so that drift in the load hits them alike:
    the ratios to trust when the medians above disagree with their minimums."""
    sides = {f"{side}_postgres_sync": sync_calls[side] for side in SIDES}
    benchmark.name = "interleaved_postgres_sync"
    ratios.add_interleaved(benchmark, sides, "bare_postgres_sync", calls=1000)


@pytest.mark.benchmark(group="happy-postgres-interleaved")
def test_postgres_async_interleaved(benchmark, async_calls, ratios):
    """The async sides taking turns in rounds."""
    loop, sides = async_calls
    calls = {
        f"{side}_postgres_async": (lambda call=sides[side]: loop.run_until_complete(call()))
        for side in SIDES
    }
    benchmark.name = "interleaved_postgres_async"
    ratios.add_interleaved(benchmark, calls, "bare_postgres_async", calls=1000)
