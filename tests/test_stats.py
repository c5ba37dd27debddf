"""Per-function statistics: exact under threads, fed by real retries and real give-ups."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

import txpolicy
from txpolicy import ErrorCategory, RetryPolicy
from txpolicy._bench import BenchTarget
from txpolicy._stats import StatisticsRecorder, TransactionStatistics
from txpolicy.instrumentation import get_statistics
from txpolicy.testing import set_testing


@pytest.fixture
def sqlite_factory(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'stats.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE item (id INTEGER PRIMARY KEY)")
    yield sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def pg_target(postgres_url):
    """A table whose writes can be made to fail once with a real serialization failure."""
    target = BenchTarget(postgres_url)
    yield target
    target.close()


def test_recorder_is_exact_under_threads():
    """Eight threads recording at once lose no call, attempt, retry or wait."""
    recorder = StatisticsRecorder()

    def work():
        for i in range(1000):
            recorder.record_retry(ErrorCategory.DEADLOCK, 0.5)
            recorder.record_call(2, failed=i % 10 == 0)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert (
        TransactionStatistics(
            calls=8000,
            failures=800,
            attempts=16000,
            retries_by_category={ErrorCategory.DEADLOCK: 8000},
            waited=4000.0,
        )
        == recorder()
    )


def test_snapshot_is_frozen_and_reads_zero_for_unseen_categories():
    """A snapshot does not follow later records; unseen categories read 0."""
    recorder = StatisticsRecorder()
    recorder.record_retry(ErrorCategory.SERIALIZATION, 0.0)
    snapshot = recorder.snapshot()

    recorder.record_retry(ErrorCategory.SERIALIZATION, 0.0)
    recorder.reset()

    assert 1 == snapshot.retries_by_category[ErrorCategory.SERIALIZATION]
    assert 0 == snapshot.retries_by_category[ErrorCategory.DEADLOCK]
    assert 1 == snapshot.retries
    assert TransactionStatistics() == recorder()
    with pytest.raises(TypeError):
        snapshot.retries_by_category[ErrorCategory.DEADLOCK] = 1  # type: ignore[index]


def test_get_statistics_rejects_undecorated_functions():
    """Only functions decorated by transactional() have statistics."""
    with pytest.raises(TypeError, match="not a function decorated with transactional"):
        get_statistics(len)


def test_calls_are_exact_under_threads(sqlite_factory):
    """Concurrent committed calls from eight threads are all counted, one attempt each."""

    @txpolicy.transactional(sqlite_factory)
    def read(session):
        return session.execute(sa.text("SELECT count(*) FROM item")).scalar_one()

    threads = [threading.Thread(target=lambda: [read() for _ in range(25)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    stats = get_statistics(read)
    assert (200, 200, 0, 0) == (stats.calls, stats.attempts, stats.failures, stats.retries)
    assert stats == read.statistics()


def test_real_retries_are_counted_by_category(pg_target):
    """Three calls, each meeting one real serialization failure: 6 attempts, 3 retries."""
    write = txpolicy.transactional(pg_target.retry_factory)(pg_target.write)

    with set_testing():
        for _ in range(3):
            pg_target.arm()
            write()

    stats = get_statistics(write)
    assert (3, 6, 0) == (stats.calls, stats.attempts, stats.failures)
    assert {ErrorCategory.SERIALIZATION: 3} == dict(stats.retries_by_category)
    assert 0.0 == stats.waited  # testing mode: nothing slept


def test_time_spent_waiting(pg_target):
    """Outside testing mode the wait actually slept is added up."""
    policy = RetryPolicy(wait_initial=0.01, wait_max=0.01, jitter="none")
    write = txpolicy.transactional(pg_target.retry_factory, policy=policy)(pg_target.write)
    pg_target.arm()

    write()

    assert 0.01 == pytest.approx(get_statistics(write).waited)


def test_failures_are_counted(pg_target, sqlite_factory):
    """A give-up after the last attempt and an application error both count as failures."""
    write = txpolicy.transactional(pg_target.retry_factory, policy=RetryPolicy(attempts=2))(
        pg_target.write
    )

    @txpolicy.transactional(sqlite_factory)
    def broken(session):
        raise ValueError("application bug")

    with set_testing():
        pg_target.arm()
        write()  # retried, commits
        with pytest.raises(ValueError, match="application bug"):
            broken()

    retried, failed = get_statistics(write), get_statistics(broken)
    assert (1, 0, 2) == (retried.calls, retried.failures, retried.attempts)
    assert (1, 1, 1) == (failed.calls, failed.failures, failed.attempts)


@pytest.mark.anyio
async def test_async_calls_are_counted(tmp_path):
    """Async decorated functions keep the same statistics, give-ups included."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'stats.db'}")
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE item (id INTEGER PRIMARY KEY)")

        @txpolicy.transactional(async_sessionmaker(engine))
        async def add(session, item_id):
            await session.execute(sa.text("INSERT INTO item (id) VALUES (:id)"), {"id": item_id})

        await add(1)
        with pytest.raises(txpolicy.IntegrityError):
            await add(1)
    finally:
        await engine.dispose()

    stats = get_statistics(add)
    assert (2, 1, 2) == (stats.calls, stats.failures, stats.attempts)
