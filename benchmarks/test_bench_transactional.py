"""
The happy path on SQLite in-memory: what ``@transactional`` costs when nothing fails.

Five sides around the same body (``session.execute(select(1))``), sync and async
(aiosqlite), side by side in one run:

- ``bare_*``: ``with sessionmaker.begin() as session`` (the baseline);
- ``transactional_*``: ``@txpolicy.transactional(sessionmaker)``;
- ``tenacity_*``: tenacity ``@retry`` (full jitter, 5 attempts) around the bare block;
- ``stamina_*``: stamina ``@retry`` (5 attempts) around the bare block;
- ``backoff_*``: backoff ``on_exception`` (5 tries, full jitter from 50 ms, 2 s cap) around it.

The goal of issue 3 is ``transactional`` within 5 % of ``bare`` and faster than tenacity and
stamina. Ratios to ``bare`` are printed at the end and stored in the JSON
(``extra_info["ratio_to_baseline"]``). Timings never gate anything.

Run: ``.venv/bin/pytest benchmarks/test_bench_transactional.py -p no:cacheprovider
--benchmark-only -o testpaths=benchmarks``.
"""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from _support import RatioTable, async_sides, sync_sides
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

SYNC = "happy-sqlite-sync"
ASYNC = "happy-sqlite-async"
SIDES = ["bare", "transactional", "tenacity", "stamina", "backoff"]
STATEMENT = sa.select(1)
WARMUP = 200


@pytest.fixture(scope="module")
def ratios(request):
    table = RatioTable("happy path on SQLite in-memory, select(1)")
    yield table
    table.emit(request.config)


@pytest.fixture(scope="module")
def sync_calls():
    engine = sa.create_engine("sqlite://")
    sides = sync_sides(sessionmaker(engine), STATEMENT)
    for call in sides.values():
        for _ in range(WARMUP):
            call()
    yield sides
    engine.dispose()


@pytest.fixture(scope="module")
def async_calls():
    loop = asyncio.new_event_loop()
    engine = create_async_engine("sqlite+aiosqlite://")
    sides = async_sides(async_sessionmaker(engine), STATEMENT)
    for call in sides.values():
        for _ in range(WARMUP):
            loop.run_until_complete(call())
    yield loop, sides
    loop.run_until_complete(engine.dispose())
    loop.close()


@pytest.mark.benchmark(group=SYNC, min_rounds=2000, warmup=True)
@pytest.mark.parametrize("side", SIDES)
def test_happy_path_sync(benchmark, sync_calls, ratios, side):
    """One transaction that reads select(1), bare and in each retry wrapper."""
    benchmark.name = f"{side}_sqlite_sync"
    result = benchmark(sync_calls[side])

    assert 1 == result
    ratios.add(benchmark, "bare_sqlite_sync")


@pytest.mark.benchmark(group=ASYNC, min_rounds=1000, warmup=True)
@pytest.mark.parametrize("side", SIDES)
def test_happy_path_async(benchmark, async_calls, ratios, side):
    """The same transaction through aiosqlite, bare and in each async retry wrapper."""
    loop, sides = async_calls
    call = sides[side]
    benchmark.name = f"{side}_sqlite_async"
    result = benchmark(lambda: loop.run_until_complete(call()))

    assert 1 == result
    ratios.add(benchmark, "bare_sqlite_async")
