"""
A contended transfer workload on PostgreSQL: goodput, retries per commit and p99 latency.

A few threads run a fixed plan of transfers between a few accounts. Each side runs the
same transfer body and differs only in how it retries:

- ``transactional_*``: ``@transactional`` with txpolicy's default backoff (full jitter from
  50 ms, 2 s cap), 20 attempts and no deadline (every side gets 20 attempts, so that nobody
  gives up and goodput compares the waiting strategies only);
- ``tenacity_full_jitter_*``: a hand-written tenacity loop with the same backoff;
- ``tenacity_fixed_wait_*``: the same loop with a fixed 50 ms wait;
- ``tenacity_no_wait_*``: the same loop retrying at once;
- ``transactional_lock_timeout_*`` (deadlock workload only): ``@transactional`` with a
  per-transaction ``lock_timeout`` of 50 ms, against PostgreSQL's ``deadlock_timeout``
  (one second by default) that the other sides wait for.

Two workloads: ``serializable`` (read both balances, then update both, at SERIALIZABLE:
real 40001 serialization failures) and ``deadlock`` (READ COMMITTED, update the two rows in
plan order with a short pause between them: real 40P01 deadlocks).

pytest-benchmark times one whole plan per round (lower is better); goodput (commits per
second of wall time), retries per commit, p50/p99 latency of one transfer (from its first
attempt to its commit, waits included) and give-ups are in ``extra_info`` and in the table
printed at the end. After every round each balance must be what applying every committed
transfer of the plan exactly once gives.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import threading
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa
import tenacity
from sqlalchemy.orm import Session, sessionmaker

import txpolicy
from _support import WAIT_INITIAL, WAIT_MAX, emit_lines, postgres_url, unique_table

INITIAL_BALANCE = 1_000
ROUNDS = 4


@dataclasses.dataclass(frozen=True)
class Workload:
    """One contended workload; sized so that a round takes a few seconds on 2 cores."""

    isolation: str
    threads: int
    accounts: int
    transfers: int  # per round
    pause: float  # seconds of "application work" between the two updates


WORKLOADS = {
    "serializable": Workload("SERIALIZABLE", threads=8, accounts=10, transfers=300, pause=0.0),
    "deadlock": Workload("READ COMMITTED", threads=8, accounts=16, transfers=120, pause=0.005),
}
MAX_ACCOUNTS = max(w.accounts for w in WORKLOADS.values())
RETRIED_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
# Generous enough that no side gives up: goodput then compares waiting strategies only.
CONTENDED_ATTEMPTS = 20


class Tally:
    """What one round of one side did."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.commits = 0
        self.give_ups = 0
        self.attempts = 0
        self.latencies: list[float] = []
        self.given_up: list[tuple[int, int, int]] = []

    def record(self, item, attempts: int, latency: float, *, committed: bool) -> None:
        with self.lock:
            self.attempts += attempts
            if committed:
                self.commits += 1
                self.latencies.append(latency)
            else:
                self.give_ups += 1
                self.given_up.append(item)


class Transfer:
    """The body every side runs: move *amount* from account *a* to account *b*."""

    def __init__(self, table: str, workload: str) -> None:
        self.read = sa.text(f"SELECT balance FROM {table} WHERE id = :id")
        self.update = sa.text(f"UPDATE {table} SET balance = balance + :delta WHERE id = :id")
        self.pause = WORKLOADS[workload].pause
        self.serializable = WORKLOADS[workload].isolation == "SERIALIZABLE"

    def __call__(self, session: Session, a: int, b: int, amount: int, attempts: list[int]) -> None:
        attempts[0] += 1
        first, second = (a, -amount), (b, amount)
        if self.serializable:
            session.execute(self.read, {"id": a}).scalar_one()
            session.execute(self.read, {"id": b}).scalar_one()
            # Rows in id order: no deadlocks, only serialization failures.
            first, second = sorted((first, second))
        session.execute(self.update, {"id": first[0], "delta": first[1]})
        if self.pause:
            time.sleep(self.pause)  # application work between the two statements
        session.execute(self.update, {"id": second[0], "delta": second[1]})


def is_retryable(exc: BaseException) -> bool:
    """What a hand-written loop checks: the driver's SQLSTATE."""
    return isinstance(exc, sa.exc.OperationalError) and (
        getattr(exc.orig, "sqlstate", None) in RETRIED_SQLSTATES
    )


def tenacity_side(factory: sessionmaker[Session], body: Transfer, wait: tenacity.wait.wait_base):
    """A hand-written tenacity loop around ``factory.begin()``."""
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(CONTENDED_ATTEMPTS),
        wait=wait,
        retry=tenacity.retry_if_exception(is_retryable),
        reraise=True,
    )

    def run(a: int, b: int, amount: int, attempts: list[int]) -> None:
        for attempt in retrying.copy():
            with attempt, factory.begin() as session:
                body(session, a, b, amount, attempts)

    return run


def transactional_side(factory: sessionmaker[Session], body: Transfer, **options):
    """``@transactional`` with the default backoff and the same attempt limit."""
    policy = txpolicy.RetryPolicy(attempts=CONTENDED_ATTEMPTS, deadline=None)
    return txpolicy.transactional(factory, policy=policy, **options)(body)


SIDES: dict[str, Callable[..., Callable[..., None]]] = {
    "transactional": transactional_side,
    "transactional_lock_timeout_50ms": lambda f, b: transactional_side(f, b, lock_timeout=0.05),
    "tenacity_full_jitter": lambda f, b: tenacity_side(
        f, b, tenacity.wait_random_exponential(multiplier=WAIT_INITIAL, max=WAIT_MAX)
    ),
    "tenacity_fixed_wait": lambda f, b: tenacity_side(f, b, tenacity.wait_fixed(WAIT_INITIAL)),
    "tenacity_no_wait": lambda f, b: tenacity_side(f, b, tenacity.wait_none()),
}
CASES = [
    pytest.param(workload, side, id=f"{side}-{workload}")
    for workload in WORKLOADS
    for side in SIDES
    if workload == "deadlock" or "lock_timeout" not in side
]


def plan(workload: Workload, seed: int) -> list[tuple[int, int, int]]:
    """The same pseudo-random transfers for every side: (from, to, amount)."""
    rng = random.Random(seed)
    out = []
    for _ in range(workload.transfers):
        a, b = rng.sample(range(1, workload.accounts + 1), 2)
        out.append((a, b, rng.randint(1, 10)))
    return out


def run_round(
    run: Callable[..., None], transfers: list[tuple[int, int, int]], threads: int, tally: Tally
) -> None:
    """Run *transfers* on *threads* threads, each taking the next transfer of the plan."""
    work = iter(transfers)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                item = next(work, None)
            if item is None:
                return
            attempts = [0]
            start = time.perf_counter()
            try:
                run(*item, attempts)
            except txpolicy.TransactionError:
                tally.record(item, attempts[0], 0.0, committed=False)
            except sa.exc.OperationalError as exc:
                if not is_retryable(exc):
                    raise
                tally.record(item, attempts[0], 0.0, committed=False)
            else:
                tally.record(item, attempts[0], time.perf_counter() - start, committed=True)

    pool = [threading.Thread(target=worker, name=f"transfer-{i}") for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=300)
        assert not thread.is_alive(), "a transfer thread did not finish"


@pytest.fixture(scope="module")
def pg():
    threads = max(w.threads for w in WORKLOADS.values())
    engine = sa.create_engine(postgres_url(), pool_size=threads + 2, max_overflow=0)
    table = unique_table()
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, balance BIGINT)")
        conn.execute(
            sa.text(f"INSERT INTO {table} (id, balance) VALUES (:id, {INITIAL_BALANCE})"),
            [{"id": i} for i in range(1, MAX_ACCOUNTS + 1)],
        )
    yield engine, table
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    engine.dispose()


@pytest.fixture(scope="module")
def report(request):
    rows: list[tuple[str, str, dict]] = []
    yield rows
    header = (
        f"contended transfers on PostgreSQL ({ROUNDS} rounds per side): "
        "goodput ratio is to transactional on the same workload"
    )
    lines = [header]
    lines.append(
        f"    {'side':<34} {'commits/s':>10} {'ratio':>6} {'retries/commit':>15}"
        f" {'p50 ms':>8} {'p99 ms':>8} {'give-ups':>9}"
    )
    base = {w: info["goodput"] for w, s, info in rows if s == "transactional"}
    current = None
    for workload, side, info in rows:
        if workload != current:
            w = WORKLOADS[workload]
            lines.append(
                f"  [{workload}] {w.isolation}, {w.threads} threads, {w.accounts} accounts,"
                f" {w.transfers} transfers per round"
            )
            current = workload
        ratio = info["goodput"] / base[workload] if base.get(workload) else float("nan")
        lines.append(
            f"    {side:<34} {info['goodput']:>10.1f} {ratio:>6.2f} {info['retries_per_commit']:>15.3f}"
            f" {info['p50_ms']:>8.1f} {info['p99_ms']:>8.1f} {info['give_ups']:>9}"
        )
    emit_lines(request.config, lines)


@pytest.mark.parametrize(("workload", "side"), CASES)
def test_contended(benchmark, pg, report, workload, side):
    """A fixed plan of contended transfers; after every round each balance is what applying
    every committed transfer exactly once gives."""
    engine, table = pg
    spec = WORKLOADS[workload]
    factory = sessionmaker(engine.execution_options(isolation_level=spec.isolation))
    run = SIDES[side](factory, Transfer(table, workload))
    tallies: list[Tally] = []
    rounds = iter(range(ROUNDS))
    checked = []

    def setup():
        with engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE {table} SET balance = {INITIAL_BALANCE}")
        tally = Tally()
        tallies.append(tally)
        return (run, plan(spec, seed=next(rounds)), spec.threads, tally), {}

    def check(_run, transfers, _threads, tally):
        with engine.connect() as conn:
            balances = dict(conn.exec_driver_sql(f"SELECT id, balance FROM {table}").all())
        expected = dict.fromkeys(balances, INITIAL_BALANCE)
        for a, b, amount in transfers:
            expected[a] -= amount
            expected[b] += amount
        for a, b, amount in tally.given_up:
            expected[a] += amount
            expected[b] -= amount
        assert expected == balances
        checked.append(tally)

    benchmark.group = f"contended-{workload}"
    benchmark.name = f"{side}_{workload}"
    benchmark.pedantic(run_round, setup=setup, teardown=check, rounds=ROUNDS, iterations=1)

    assert tallies == checked
    info = summarize(tallies, benchmark.stats.stats.data if benchmark.stats else [])
    benchmark.extra_info.update(info)
    report.append((workload, side, info))


def summarize(tallies: list[Tally], walls: list[float]) -> dict:
    """Goodput over every round, retries per commit, latency percentiles, give-ups."""
    commits = sum(t.commits for t in tallies)
    attempts = sum(t.attempts for t in tallies)
    latencies = sorted(x for t in tallies for x in t.latencies)
    cuts = (
        statistics.quantiles(latencies, n=100, method="inclusive")
        if len(latencies) > 1
        else [0.0] * 99
    )
    return {
        "goodput": commits / sum(walls) if walls else 0.0,
        "commits": commits,
        "give_ups": sum(t.give_ups for t in tallies),
        "retries_per_commit": (attempts - commits - sum(t.give_ups for t in tallies))
        / max(commits, 1),
        "p50_ms": cuts[49] * 1e3,
        "p99_ms": cuts[98] * 1e3,
    }
