"""
The happy path on SQLite in-memory: the backoff side, sync and async (aiosqlite).

``test_bench_transactional.py`` compares bare ``sessionmaker.begin()``, txpolicy, tenacity
and stamina on SQLite; this module adds backoff ``on_exception`` around the same body and
measures its own bare baseline in the same run, so the ratio is never taken across runs.
"""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from _support import RatioTable, async_sides, create_counter_table, sync_sides
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

SYNC = "happy-sqlite-backoff-sync"
ASYNC = "happy-sqlite-backoff-async"
SIDES = ["bare", "backoff"]
STATEMENT = sa.text("SELECT n FROM counter WHERE id = 1")


@pytest.fixture(scope="module")
def ratios(request):
    table = RatioTable("happy path on SQLite in-memory (backoff)")
    yield table
    table.emit(request.config)


@pytest.fixture(scope="module")
def sync_calls():
    engine = sa.create_engine("sqlite://")  # one connection per thread: the table stays
    with engine.begin() as conn:
        create_counter_table(conn, "counter")
    sides = sync_sides(sessionmaker(engine), STATEMENT)
    for call in sides.values():
        for _ in range(100):
            call()
    yield sides
    engine.dispose()


@pytest.fixture(scope="module")
def async_calls():
    loop = asyncio.new_event_loop()
    engine = create_async_engine("sqlite+aiosqlite://")  # StaticPool: one shared connection

    async def setup():
        async with engine.begin() as conn:
            await conn.run_sync(create_counter_table, "counter")

    loop.run_until_complete(setup())
    sides = async_sides(async_sessionmaker(engine), STATEMENT)
    for call in sides.values():
        for _ in range(100):
            loop.run_until_complete(call())
    yield loop, sides
    loop.run_until_complete(engine.dispose())
    loop.close()


@pytest.mark.benchmark(group=SYNC)
@pytest.mark.parametrize("side", SIDES)
def test_sqlite_sync(benchmark, sync_calls, ratios, side):
    """One read-only transaction on SQLite in-memory, bare and in a backoff wrapper."""
    benchmark.name = f"{side}_sqlite_sync"
    result = benchmark(sync_calls[side])

    assert 0 == result
    ratios.add(benchmark, "bare_sqlite_sync")


@pytest.mark.benchmark(group=ASYNC)
@pytest.mark.parametrize("side", SIDES)
def test_sqlite_async(benchmark, async_calls, ratios, side):
    """The same transaction through aiosqlite, bare and in an async backoff wrapper."""
    loop, sides = async_calls
    call = sides[side]
    benchmark.name = f"{side}_sqlite_async"
    result = benchmark(lambda: loop.run_until_complete(call()))

    assert 0 == result
    ratios.add(benchmark, "bare_sqlite_async")
