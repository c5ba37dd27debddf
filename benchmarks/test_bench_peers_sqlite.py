"""
The happy path on SQLite in-memory: the backoff side, sync and async (aiosqlite).

``test_bench_transactional.py`` compares bare ``sessionmaker.begin()``, txpolicy, tenacity
and stamina around ``session.execute(select(1))``; this module puts the same body in a
backoff ``on_exception`` wrapper (5 tries, full jitter from 50 ms, 2 s cap) and measures
its own bare baseline in the same run, so that the ratio is never taken across runs.
"""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from _support import RatioTable, async_sides, sync_sides

SYNC = "happy-sqlite-backoff-sync"
ASYNC = "happy-sqlite-backoff-async"
SIDES = ["bare", "backoff"]
STATEMENT = sa.select(1)
WARMUP = 200


@pytest.fixture(scope="module")
def ratios(request):
    table = RatioTable("happy path on SQLite in-memory, select(1): backoff")
    yield table
    table.emit(request.config)


@pytest.fixture(scope="module")
def sync_calls():
    engine = sa.create_engine("sqlite://")
    sides = sync_sides(sessionmaker(engine), STATEMENT)
    for side in SIDES:
        for _ in range(WARMUP):
            sides[side]()
    yield sides
    engine.dispose()


@pytest.fixture(scope="module")
def async_calls():
    loop = asyncio.new_event_loop()
    engine = create_async_engine("sqlite+aiosqlite://")
    sides = async_sides(async_sessionmaker(engine), STATEMENT)
    for side in SIDES:
        for _ in range(WARMUP):
            loop.run_until_complete(sides[side]())
    yield loop, sides
    loop.run_until_complete(engine.dispose())
    loop.close()


@pytest.mark.benchmark(group=SYNC, min_rounds=2000, warmup=True)
@pytest.mark.parametrize("side", SIDES)
def test_happy_path_sync(benchmark, sync_calls, ratios, side):
    """One transaction that reads select(1), bare and in a backoff wrapper."""
    benchmark.name = f"{side}_sqlite_sync"
    result = benchmark(sync_calls[side])

    assert 1 == result
    ratios.add(benchmark, "bare_sqlite_sync")


@pytest.mark.benchmark(group=ASYNC, min_rounds=1000, warmup=True)
@pytest.mark.parametrize("side", SIDES)
def test_happy_path_async(benchmark, async_calls, ratios, side):
    """The same transaction through aiosqlite, bare and in an async backoff wrapper."""
    loop, sides = async_calls
    call = sides[side]
    benchmark.name = f"{side}_sqlite_async"
    result = benchmark(lambda: loop.run_until_complete(call()))

    assert 1 == result
    ratios.add(benchmark, "bare_sqlite_async")
