"""
The cost of one retry on PostgreSQL: a real serialization failure, retried once.

Each call reads a row at REPEATABLE READ; on the first attempt a side connection updates
and commits the same row, so the call's own update fails with a real 40001; the second
attempt commits. Side by side:

- ``tenacity_one_retry_postgres`` (the baseline): a hand-written tenacity loop with full
  jitter (50 ms, 2 s cap) whose ``sleep`` does nothing;
- ``transactional_one_retry_postgres``: ``@transactional`` with its default policy, under
  ``txpolicy.testing.set_testing()`` (the wait is computed, never slept);
- ``hand_written_one_retry_postgres``: ``try``/``except``/once more, the floor of any retry;
- ``bare_no_retry_postgres``: the same read and write committing at the first attempt, to
  read the figures above as "one failed attempt plus one retry".

Every side checks that each call made exactly the attempts it should. The sessions run with
``synchronous_commit=off`` (set for this module's connections only), so that the figures
are the cost of the work, not of fsync on a shared disk.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
import tenacity

import txpolicy
from _support import ATTEMPTS, WAIT_INITIAL, WAIT_MAX, RatioTable, postgres_url
from txpolicy._bench import BenchTarget
from txpolicy.testing import set_testing

GROUP = "one-retry-postgres"
BASELINE = "tenacity_one_retry_postgres"


@pytest.fixture(scope="module")
def ratios(request):
    table = RatioTable("one retry of a real serialization failure on PostgreSQL")
    yield table
    table.emit(request.config)


@pytest.fixture(scope="module")
def target():
    # Our sessions only: commits do not wait for the WAL flush, so that the disk (shared
    # with whatever else runs) does not drown the cost of the retry itself.
    bench = BenchTarget(postgres_url(), connect_args={"options": "-c synchronous_commit=off"})
    yield bench
    bench.close()


def tenacity_side(target):
    factory = target.retry_factory
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        wait=tenacity.wait_random_exponential(multiplier=WAIT_INITIAL, max=WAIT_MAX),
        retry=tenacity.retry_if_exception_type(sa.exc.OperationalError),
        sleep=lambda _seconds: None,
        reraise=True,
    )

    def call():
        for attempt in retrying:
            with attempt, factory.begin() as session:
                target.write(session)

    return call


def transactional_side(target):
    return txpolicy.transactional(target.retry_factory)(target.write)


def hand_written_side(target):
    factory = target.retry_factory

    def call():
        try:
            with factory.begin() as session:
                target.write(session)
        except sa.exc.OperationalError:
            with factory.begin() as session:
                target.write(session)

    return call


def bare_side(target):
    factory = target.retry_factory

    def call():
        with factory.begin() as session:
            target.write(session)

    return call


SIDES = {
    "tenacity_one_retry": (tenacity_side, 2),
    "transactional_one_retry": (transactional_side, 2),
    "hand_written_one_retry": (hand_written_side, 2),
    "bare_no_retry": (bare_side, 1),
}


@pytest.mark.benchmark(group=GROUP, warmup=True)
@pytest.mark.parametrize("side", list(SIDES))
def test_one_retry(benchmark, target, ratios, side):
    """One call that meets one real 40001 and commits at its second attempt (or, for
    ``bare_no_retry``, commits at once)."""
    build, attempts_per_call = SIDES[side]
    call = build(target)
    calls = 0

    def armed():
        nonlocal calls
        calls += 1
        if attempts_per_call == 2:
            target.arm()
        call()

    before = target.attempts
    benchmark.name = f"{side}_postgres"
    with set_testing():
        benchmark(armed)

    assert attempts_per_call * calls == target.attempts - before
    ratios.add(benchmark, BASELINE)


@pytest.mark.benchmark(group=GROUP + "-interleaved")
def test_one_retry_interleaved(benchmark, target, ratios):
    """The same sides taking turns in rounds, so that drift in the load hits them alike."""
    sides = {}
    for side, (build, attempts_per_call) in SIDES.items():
        call = build(target)

        def armed(call=call, retried=attempts_per_call == 2):
            if retried:
                target.arm()
            call()

        sides[f"{side}_postgres"] = armed
    benchmark.name = "interleaved_one_retry_postgres"
    with set_testing():
        ratios.add_interleaved(benchmark, sides, BASELINE, calls=300)
