"""Pool-exhaustion warnings: once per crossing, re-armed below the threshold, exact under load."""

from __future__ import annotations

import contextlib
import logging
import threading

import anyio
import pytest
import sqlalchemy as sa

from txpolicy import AsyncDatabase, Database
from txpolicy._tracking import PoolExhaustedEvent

from .fix_db import url_for_driver


def hold(stack: contextlib.ExitStack, database: Database, n: int) -> None:
    """Open *n* more sessions, each with a checked-out connection, kept until *stack* closes."""
    for _ in range(n):
        session = stack.enter_context(database.get_session())
        session.execute(sa.text("SELECT 1"))


def pool_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "txpolicy.pool"]


def test_warning_fires_once_per_crossing(postgres_url, caplog):
    """Holding the pool at the threshold warns once; more checkouts do not warn again."""
    events = []
    with Database(postgres_url, pool_size=2, max_overflow=2, exhaustion_threshold=0.75) as db:
        db.add_listener("pool_exhausted", events.append)
        with caplog.at_level(logging.WARNING, logger="txpolicy.pool"):
            with contextlib.ExitStack() as stack:
                hold(stack, db, 2)
                below = (len(pool_warnings(caplog)), db.stats().pool_exhaustion_warnings)
                hold(stack, db, 1)
                at = (len(pool_warnings(caplog)), db.stats().pool_exhaustion_warnings)
                hold(stack, db, 1)
                full = db.stats()

    assert (0, 0) == below
    assert (1, 1) == at
    assert 1 == full.pool_exhaustion_warnings
    assert 1 == len(pool_warnings(caplog))
    assert (4, 4, 2, 1.0) == (
        full.engines["primary"].checked_out,
        full.engines["primary"].capacity,
        full.engines["primary"].overflow,
        full.engines["primary"].utilisation,
    )
    assert [PoolExhaustedEvent("primary", 3, 4, 0.75)] == events
    assert logging.WARNING == pool_warnings(caplog)[0].levelno
    assert "3 of 4" in pool_warnings(caplog)[0].getMessage()


def test_warning_rearms_below_the_threshold(postgres_url, caplog):
    """Dropping below the threshold re-arms it: each new crossing warns again."""
    counts = []
    with Database(postgres_url, pool_size=2, max_overflow=1, exhaustion_threshold=1.0) as db:
        with caplog.at_level(logging.WARNING, logger="txpolicy.pool"):
            with contextlib.ExitStack() as outer:
                hold(outer, db, 2)
                for _ in range(3):
                    with contextlib.ExitStack() as inner:
                        hold(inner, db, 1)
                        counts.append(db.stats().pool_exhaustion_warnings)
                    counts.append(db.stats().pool_exhaustion_warnings)

    assert [1, 1, 2, 2, 3, 3] == counts
    assert 3 == len(pool_warnings(caplog))


def test_no_warning_when_capacity_is_unbounded(postgres_url, caplog):
    """With max_overflow=None the pool is unbounded: no capacity, no utilisation, no warning."""
    with Database(postgres_url, pool_size=1, max_overflow=None) as db:
        with caplog.at_level(logging.WARNING, logger="txpolicy.pool"):
            with contextlib.ExitStack() as stack:
                hold(stack, db, 3)
                engine_stats = db.stats().engines["primary"]
        warnings = db.stats().pool_exhaustion_warnings

    assert (None, None, 3) == (
        engine_stats.capacity,
        engine_stats.utilisation,
        engine_stats.checked_out,
    )
    assert 0 == warnings
    assert [] == pool_warnings(caplog)


def test_threshold_none_never_warns(postgres_url, caplog):
    """exhaustion_threshold=None switches the warning off but keeps the figures."""
    with Database(postgres_url, pool_size=1, max_overflow=0, exhaustion_threshold=None) as db:
        with caplog.at_level(logging.WARNING, logger="txpolicy.pool"):
            with contextlib.ExitStack() as stack:
                hold(stack, db, 1)
                engine_stats = db.stats().engines["primary"]

    assert (1, 1.0) == (engine_stats.checked_out, engine_stats.utilisation)
    assert [] == pool_warnings(caplog)


def test_engine_passed_in_is_watched_too(postgres_url, caplog):
    """An engine built by the caller is watched with its own pool's capacity."""
    engine = sa.create_engine(postgres_url, pool_size=1, max_overflow=1)
    with Database(engine, exhaustion_threshold=0.5) as db:
        with caplog.at_level(logging.WARNING, logger="txpolicy.pool"):
            with contextlib.ExitStack() as stack:
                hold(stack, db, 1)
                stats = db.stats()
    engine.dispose()

    assert (1, 2, 1) == (
        stats.engines["primary"].checked_out,
        stats.engines["primary"].capacity,
        stats.pool_exhaustion_warnings,
    )


def test_counts_are_exact_under_threads(postgres_url, caplog):
    """
    Six threads fill a six-connection pool together, then empty it, ten times over.

    Each round crosses the threshold exactly once whatever the interleaving, so there are
    exactly ten warnings, and the pool is empty at the end.
    """
    rounds, workers = 10, 6
    barrier = threading.Barrier(workers, timeout=30)
    errors = []
    with Database(postgres_url, pool_size=4, max_overflow=2, exhaustion_threshold=0.5) as db:

        def work() -> None:
            try:
                for _ in range(rounds):
                    with db.get_session() as session:
                        session.execute(sa.text("SELECT 1"))
                        barrier.wait()
                    barrier.wait()
            except BaseException as exc:
                errors.append(exc)
                barrier.abort()

        with caplog.at_level(logging.WARNING, logger="txpolicy.pool"):
            threads = [threading.Thread(target=work) for _ in range(workers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
        stats = db.stats()

    assert [] == errors
    assert rounds == stats.pool_exhaustion_warnings
    assert rounds == len(pool_warnings(caplog))
    assert (0, rounds * workers) == (
        stats.engines["primary"].checked_out,
        stats.sessions_cleaned_up,
    )


def test_unbounded_counts_are_exact_under_threads(postgres_url):
    """
    An unbounded pool (nothing to warn about) is counted without a lock: six threads holding
    a connection each are six checked out, and the count is back to zero when they are done.
    """
    rounds, workers = 10, 6
    barrier = threading.Barrier(workers + 1, timeout=30)
    errors, held = [], []
    with Database(postgres_url, pool_size=2, max_overflow=None) as db:

        def work() -> None:
            try:
                for _ in range(rounds):
                    with db.get_session() as session:
                        session.execute(sa.text("SELECT 1"))
                        barrier.wait()  # all hold a connection: the main thread counts
                        barrier.wait()
            except BaseException as exc:
                errors.append(exc)
                barrier.abort()

        threads = [threading.Thread(target=work) for _ in range(workers)]
        for thread in threads:
            thread.start()
        try:
            for _ in range(rounds):
                barrier.wait()
                held.append(db.stats().engines["primary"].checked_out)
                barrier.wait()
        finally:
            for thread in threads:
                thread.join(60)
        stats = db.stats()

    assert [] == errors
    assert [workers] * rounds == held
    assert (0, None, 0) == (
        stats.engines["primary"].checked_out,
        stats.engines["primary"].capacity,
        stats.pool_exhaustion_warnings,
    )


def test_raising_pool_listener_does_not_break_checkout(postgres_url, caplog):
    """A pool_exhausted listener that raises is logged; the session still works."""

    def bad(record):
        raise RuntimeError("listener bug")

    with Database(postgres_url, pool_size=1, max_overflow=0) as db:
        db.add_listener("pool_exhausted", bad)
        with caplog.at_level(logging.WARNING, logger="txpolicy"):
            with db.get_session() as session:
                value = session.execute(sa.text("SELECT 1")).scalar_one()

    assert 1 == value
    assert 1 == len(pool_warnings(caplog))
    assert any(r.name == "txpolicy.database" and r.exc_info for r in caplog.records)


@pytest.mark.anyio
async def test_async_pool_held_full_warns_once(postgres_url, caplog):
    """Tasks holding an async pool full warn once; the figures come back to zero."""
    url = url_for_driver(postgres_url, "postgresql+psycopg")
    db = AsyncDatabase(url, pool_size=3, max_overflow=0, exhaustion_threshold=1.0)
    full = anyio.Event()
    entered = 0

    async def holder() -> None:
        nonlocal entered
        async with db.get_session() as session:
            await session.execute(sa.text("SELECT 1"))
            entered += 1
            if entered == 3:
                full.set()
            with anyio.fail_after(30):
                await full.wait()

    try:
        with caplog.at_level(logging.WARNING, logger="txpolicy.pool"):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(holder)
        stats = db.stats()
    finally:
        await db.aclose()

    assert 1 == stats.pool_exhaustion_warnings
    assert 1 == len(pool_warnings(caplog))
    assert 0 == stats.engines["primary"].checked_out
