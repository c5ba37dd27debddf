"""
The starvation guard on pgbench's own TPC-B workload, side by side with pgbench.

**Contended** (``tpcb-contended``): pgbench's builtin ``tpcb-like`` transaction (update an
account, read it back, update a teller, update the branch, insert a history row, with random
aid / tid / delta) at scale 1 — one branch row that every transaction updates — at
SERIALIZABLE, 8 clients, 30 tries. Sides:

- ``pgbench``: ``pgbench --max-tries=30 -c 8 -j 2 -T <seconds>`` itself, with
  ``PGOPTIONS=-c default_transaction_isolation=serializable``; it retries at once. Its
  failed transactions are the ones that used up their 30 tries.
- ``backoff``: the same five statements through ``@transactional`` on 8 threads,
  ``RetryPolicy(attempts=30, wait_initial=0.005, wait_max=0.1, deadline=None)`` (full jitter).
- ``escalate_after=4`` and ``escalate_after=10``: the same policy with the starvation guard.

A call is *exhausted* when it gave up after its 30th attempt. The sides take turns: each of
``ROUNDS`` rounds runs every side for ``SECONDS`` seconds, so that load from other work on a
shared machine hits them alike; the figures are over all rounds. pgbench is C and runs the
statements without a Python client in between, so its transactions per second are not
comparable with the Python sides'; its exhausted rate is.

**Uncontended** (``tpcb-uncontended``): scale 8, each thread on its own branch (its own
tellers and accounts), REPEATABLE READ, so nothing conflicts: ``backoff`` against
``escalate_after=4``, taking turns in rounds of ``SECONDS / 2``: the guard must cost no
throughput when there is no contention. (At SERIALIZABLE PostgreSQL's predicate locks on the
shared index pages of the tellers and branches make even disjoint transactions conflict.)
And what the guard adds to one call where nothing fails (``escalation-happy-path``:
SQLite in-memory, ``select(1)``, the two policies taking turns, per-call medians): the gate's
lock and counter, no statement.

The Python sides change places from one round to the next, so that none always runs right
after pgbench or first in a round.

Before each turn, as pgbench does, the branches and tellers are vacuumed and the history is
emptied; after each Python turn the TPC-B invariant is checked: the accounts, tellers,
branches and history moved by exactly the deltas of the calls that committed, once each.

Each side's figures (calls, exhausted, transactions per second, retries per commit, p50 /
p99 latency of a committed call from its first attempt, waits included, highest attempt
count, escalations) are in ``extra_info`` and in the table printed at the end.

The databases (``txp_tpcb_<pid>_s1`` and ``_s8``) are made with ``createdb`` and
``pgbench -i`` and dropped afterwards; the benchmark skips without ``pgbench`` or a server.

Run length: ``TXPOLICY_BENCH_TPCB_ROUNDS`` (default 6) × ``TXPOLICY_BENCH_TPCB_SECONDS``
(default 10) per side: about 5 minutes for everything under ``make bench``. A quick version
for a first look: ``TXPOLICY_BENCH_TPCB_ROUNDS=1`` (about a minute).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

import txpolicy
from _support import RatioTable, emit_lines, postgres_url

ROUNDS = int(os.environ.get("TXPOLICY_BENCH_TPCB_ROUNDS", "6"))
SECONDS = float(os.environ.get("TXPOLICY_BENCH_TPCB_SECONDS", "10"))
CLIENTS = 8
TRIES = 30
BACKOFF = {"attempts": TRIES, "wait_initial": 0.005, "wait_max": 0.1, "deadline": None}
CONTENDED = {
    "backoff": txpolicy.RetryPolicy(**BACKOFF),
    "escalate_after=4": txpolicy.RetryPolicy(**BACKOFF, escalate_after=4),
    "escalate_after=10": txpolicy.RetryPolicy(**BACKOFF, escalate_after=10),
}
UNCONTENDED = {
    "backoff": txpolicy.RetryPolicy(**BACKOFF),
    "escalate_after=4": txpolicy.RetryPolicy(**BACKOFF, escalate_after=4),
}
ACCOUNTS_PER_BRANCH = 100_000
TELLERS_PER_BRANCH = 10

# pgbench's builtin tpcb-like script, minus BEGIN / END (the scope begins and commits).
TPCB = [
    "UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid",
    "SELECT abalance FROM pgbench_accounts WHERE aid = :aid",
    "UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid",
    "UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime)"
    " VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP)",
]
TOTALS = [
    "SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts",
    "SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers",
    "SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches",
    "SELECT coalesce(sum(delta), 0) FROM pgbench_history",
]


# --- the databases ------------------------------------------------------------------------------


class Server:
    """Where pgbench and createdb connect: the test server's host, port and user."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.url = parsed
        self.env = dict(
            os.environ,
            PGHOST=parsed.host or "127.0.0.1",
            PGPORT=str(parsed.port or 5432),
            PGUSER=parsed.username or "postgres",
        )
        if parsed.password:
            self.env["PGPASSWORD"] = parsed.password

    def run(self, *args: str, env: dict[str, str] | None = None) -> str:
        """Run a PostgreSQL client program; its output (stdout and stderr)."""
        done = subprocess.run(  # noqa: S603 - fixed programs, our own arguments
            args, env=env or self.env, capture_output=True, text=True, timeout=900, check=True
        )
        return done.stdout + done.stderr

    def create(self, name: str, scale: int) -> sa.Engine:
        """A fresh database initialised by ``pgbench -i -s scale``, and an engine on it."""
        self.run("createdb", name)
        self.run("pgbench", "-i", "-q", "-s", str(scale), name)
        url = self.url.set(database=name)
        return sa.create_engine(url, pool_size=CLIENTS + 2, max_overflow=0)

    def drop(self, name: str) -> None:
        self.run("dropdb", "--if-exists", "--force", name)


@pytest.fixture(scope="module")
def server() -> Server:
    for program in ("pgbench", "createdb", "dropdb"):
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed")
    return Server(postgres_url())


@pytest.fixture(scope="module")
def report(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    lines: list[str] = []
    yield lines
    emit_lines(request.config, lines)


@pytest.fixture(scope="module")
def scale_1(server: Server) -> Iterator[sa.Engine]:
    name = f"txp_tpcb_{os.getpid()}_s1"
    engine = server.create(name, 1)
    yield engine
    engine.dispose()
    server.drop(name)


@pytest.fixture(scope="module")
def scale_8(server: Server) -> Iterator[sa.Engine]:
    name = f"txp_tpcb_{os.getpid()}_s8"
    engine = server.create(name, CLIENTS)
    yield engine
    engine.dispose()
    server.drop(name)


def reset(engine: sa.Engine) -> tuple[int, ...]:
    """What pgbench does before a run (vacuum, empty history); the balance totals after it."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM pgbench_branches")
        conn.exec_driver_sql("VACUUM pgbench_tellers")
        conn.exec_driver_sql("TRUNCATE pgbench_history")
        return tuple(conn.exec_driver_sql(sql).scalar_one() for sql in TOTALS)


# --- one side's figures -------------------------------------------------------------------------


class Tally:
    """What the turns of one side did, summed over the rounds."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = self.committed = self.exhausted = self.attempts = 0
        self.max_attempts = 0
        self.seconds = 0.0
        self.latencies: list[float] = []
        self.escalations = 0

    def record(self, attempts: int, latency: float | None) -> None:
        with self.lock:
            self.calls += 1
            self.attempts += attempts
            if latency is None:
                self.exhausted += 1
            else:
                self.committed += 1
                self.latencies.append(latency)
                self.max_attempts = max(self.max_attempts, attempts)

    def figures(self) -> dict[str, Any]:
        cuts = (
            statistics.quantiles(self.latencies, n=100, method="inclusive")
            if len(self.latencies) > 1
            else [0.0] * 99
        )
        return {
            "calls": self.calls,
            "committed": self.committed,
            "exhausted": self.exhausted,
            "exhausted_per_100k": round(self.exhausted / max(self.calls, 1) * 100_000, 1),
            "tps": round(self.committed / self.seconds, 1) if self.seconds else 0.0,
            "retries_per_commit": round(
                (self.attempts - self.calls) / max(self.committed, 1), 3
            ),
            "p50_ms": round(cuts[49] * 1e3, 2),
            "p99_ms": round(cuts[98] * 1e3, 2),
            "max_attempts": self.max_attempts,
            "escalations": self.escalations,
            "seconds": round(self.seconds, 1),
        }


# --- the Python side ----------------------------------------------------------------------------


Params = Callable[[random.Random, int], dict[str, int]]


def contended_params(rng: random.Random, _thread: int) -> dict[str, int]:
    """pgbench's choice at scale 1: any account and teller, the one branch."""
    return {
        "aid": rng.randint(1, ACCOUNTS_PER_BRANCH),
        "bid": 1,
        "tid": rng.randint(1, TELLERS_PER_BRANCH),
        "delta": rng.randint(-5000, 5000),
    }


def own_branch_params(rng: random.Random, thread: int) -> dict[str, int]:
    """Thread *n* keeps to branch n + 1, its tellers and its accounts."""
    bid = thread + 1
    return {
        "aid": (bid - 1) * ACCOUNTS_PER_BRANCH + rng.randint(1, ACCOUNTS_PER_BRANCH),
        "bid": bid,
        "tid": (bid - 1) * TELLERS_PER_BRANCH + rng.randint(1, TELLERS_PER_BRANCH),
        "delta": rng.randint(-5000, 5000),
    }


def tpcb_function(engine: sa.Engine, policy: txpolicy.RetryPolicy, isolation: str) -> Any:
    """The TPC-B transaction through ``@transactional`` (it counts its own attempts)."""
    statements = [sa.text(sql) for sql in TPCB]

    @txpolicy.transactional(sessionmaker(engine), policy=policy, isolation_level=isolation)
    def tpcb(session: Any, params: dict[str, int], attempts: list[int]) -> None:
        attempts[0] += 1
        for statement in statements:
            session.execute(statement, params)

    return tpcb


def python_turn(
    engine: sa.Engine, tpcb: Any, params: Params, seconds: float, tally: Tally, seed: int
) -> None:
    """CLIENTS threads call *tpcb* for *seconds*; then the TPC-B invariant is checked."""
    before = reset(engine)
    committed_delta = [0]
    committed_count = [0]
    lock = threading.Lock()
    escalations = tpcb.statistics().escalations
    stop = time.monotonic() + seconds

    def client(thread: int) -> None:
        rng = random.Random(seed * 1000 + thread)
        while time.monotonic() < stop:
            call = params(rng, thread)
            attempts = [0]
            start = time.perf_counter()
            try:
                tpcb(call, attempts)
            except txpolicy.TransientError:
                tally.record(attempts[0], None)
            else:
                tally.record(attempts[0], time.perf_counter() - start)
                with lock:
                    committed_delta[0] += call["delta"]
                    committed_count[0] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 120)
        assert not thread.is_alive(), "a TPC-B client did not finish"
    tally.seconds += time.monotonic() - started
    tally.escalations += tpcb.statistics().escalations - escalations

    with engine.connect() as conn:
        after = tuple(conn.exec_driver_sql(sql).scalar_one() for sql in TOTALS)
        rows = conn.exec_driver_sql("SELECT count(*) FROM pgbench_history").scalar_one()
    moved = committed_delta[0]
    assert (moved, moved, moved, moved) == (
        after[0] - before[0],
        after[1] - before[1],
        after[2] - before[2],
        after[3],
    )
    assert committed_count[0] == rows


# --- the pgbench side ---------------------------------------------------------------------------

_PGBENCH = {
    "processed": re.compile(r"number of transactions actually processed: (\d+)"),
    "failed": re.compile(r"number of failed transactions: (\d+)"),
    "retries": re.compile(r"total number of retries: (\d+)"),
    "tps": re.compile(r"tps = ([\d.]+) \(without initial connection time\)"),
}


def pgbench_turn(server: Server, database: str, seconds: float, tally: Tally) -> None:
    """pgbench's own TPC-B run at SERIALIZABLE, 30 tries; per-transaction log for latencies."""
    env = dict(server.env, PGOPTIONS="-c default_transaction_isolation=serializable")
    with tempfile.TemporaryDirectory(prefix="txp_pgbench_") as logs:
        output = server.run(
            "pgbench",
            f"--max-tries={TRIES}",
            "-c",
            str(CLIENTS),
            "-j",
            "2",
            "-T",
            str(round(seconds)),
            "-l",
            f"--log-prefix={logs}/tx",
            database,
            env=env,
        )
        # Log lines: client, transaction, latency (µs, or "failed"), script, epoch s, µs[, retries].
        for log in Path(logs).iterdir():
            for line in log.read_text().splitlines():
                fields = line.split()
                retries = int(fields[6]) if len(fields) > 6 else 0
                if fields[2] == "failed":
                    tally.record(retries + 1, None)
                else:
                    tally.record(retries + 1, int(fields[2]) / 1e6)
    found = {key: pattern.search(output) for key, pattern in _PGBENCH.items()}
    processed = int(found["processed"].group(1)) if found["processed"] else 0
    tps = float(found["tps"].group(1)) if found["tps"] else 0.0
    tally.seconds += processed / tps if tps else seconds


# --- the benchmarks -----------------------------------------------------------------------------


def headline(benchmark: Any, sides: dict[str, Tally]) -> None:
    """Flat numbers for the docs' Benchmarks table (it shows the numeric ``extra_info``)."""
    for name, tally in sides.items():
        figures = tally.figures()
        benchmark.extra_info[f"{name}: exhausted"] = figures["exhausted"]
        benchmark.extra_info[f"{name}: tps"] = figures["tps"]
        benchmark.extra_info[f"{name}: p99 ms"] = figures["p99_ms"]


def rotated(functions: dict[str, Any], round_: int) -> list[tuple[str, Any]]:
    """The sides in a different order each round (a rotation by the round number)."""
    items = list(functions.items())
    shift = round_ % len(items)
    return items[shift:] + items[:shift]


def table(title: str, sides: dict[str, Tally]) -> list[str]:
    """The printed comparison."""
    lines = [
        title,
        f"    {'side':<22} {'calls':>7} {'exhausted':>9} {'per 100k':>9} {'tps':>7}"
        f" {'retries/commit':>14} {'p50 ms':>7} {'p99 ms':>8} {'max tries':>9} {'escalated':>9}",
    ]
    for name, tally in sides.items():
        f = tally.figures()
        lines.append(
            f"    {name:<22} {f['calls']:>7} {f['exhausted']:>9} {f['exhausted_per_100k']:>9}"
            f" {f['tps']:>7} {f['retries_per_commit']:>14} {f['p50_ms']:>7} {f['p99_ms']:>8}"
            f" {f['max_attempts']:>9} {f['escalations']:>9}"
        )
    return lines


def test_tpcb_contended(
    benchmark: Any, server: Server, scale_1: sa.Engine, report: list[str]
) -> None:
    """Scale 1, SERIALIZABLE, 8 clients, 30 tries: pgbench vs backoff vs the guard."""
    database = scale_1.url.database
    assert database is not None
    functions = {
        name: tpcb_function(scale_1, policy, "SERIALIZABLE") for name, policy in CONTENDED.items()
    }
    sides = {"pgbench": Tally(), **{name: Tally() for name in functions}}

    def run() -> None:
        for round_ in range(ROUNDS):
            pgbench_turn(server, database, SECONDS, sides["pgbench"])
            for name, tpcb in rotated(functions, round_):
                python_turn(scale_1, tpcb, contended_params, SECONDS, sides[name], round_)

    benchmark.group = "tpcb-contended"
    benchmark.name = "tpcb_contended_interleaved"
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["rounds"] = ROUNDS
    benchmark.extra_info["seconds_per_turn"] = SECONDS
    benchmark.extra_info["sides"] = {name: tally.figures() for name, tally in sides.items()}
    headline(benchmark, sides)
    report.extend(
        table(
            f"TPC-B (pgbench's tpcb-like) at scale 1, SERIALIZABLE, {CLIENTS} clients, {TRIES}"
            f" tries; {ROUNDS} rounds x {SECONDS:g} s per side, taking turns",
            sides,
        )
    )
    for name in functions:
        if name.startswith("escalate_after"):
            assert 0 == sides[name].exhausted, f"{name} exhausted calls"


def test_tpcb_uncontended(benchmark: Any, scale_8: sa.Engine, report: list[str]) -> None:
    """Each thread on its own branch, REPEATABLE READ: the guard must cost no throughput."""
    functions = {
        name: tpcb_function(scale_8, policy, "REPEATABLE READ")
        for name, policy in UNCONTENDED.items()
    }
    sides = {name: Tally() for name in functions}
    per_round: dict[str, list[float]] = {name: [] for name in functions}

    def run() -> None:
        for round_ in range(ROUNDS):
            for name, tpcb in rotated(functions, round_):
                tally = sides[name]
                committed, seconds = tally.committed, tally.seconds
                python_turn(scale_8, tpcb, own_branch_params, SECONDS / 2, tally, round_)
                per_round[name].append(
                    (tally.committed - committed) / (tally.seconds - seconds)
                )

    benchmark.group = "tpcb-uncontended"
    benchmark.name = "tpcb_uncontended_interleaved"
    benchmark.pedantic(run, rounds=1, iterations=1)
    medians = {name: statistics.median(values) for name, values in per_round.items()}
    ratio = medians["escalate_after=4"] / medians["backoff"]
    benchmark.extra_info["rounds"] = ROUNDS
    benchmark.extra_info["seconds_per_turn"] = SECONDS / 2
    benchmark.extra_info["sides"] = {name: tally.figures() for name, tally in sides.items()}
    headline(benchmark, sides)
    benchmark.extra_info["tps_per_round"] = {
        name: [round(v, 1) for v in values] for name, values in per_round.items()
    }
    benchmark.extra_info["median_tps_per_round"] = {k: round(v, 1) for k, v in medians.items()}
    benchmark.extra_info["median_tps_ratio"] = round(ratio, 3)
    report.extend(
        table(
            f"TPC-B, scale {CLIENTS}, each thread on its own branch, REPEATABLE READ,"
            f" {CLIENTS} threads; {ROUNDS} rounds x {SECONDS / 2:g} s per side, taking turns",
            sides,
        )
    )
    report.append(
        "    median tps per round: "
        + ", ".join(f"{name} {value:.1f}" for name, value in medians.items())
        + f"; ratio {ratio:.3f}"
    )
    report.extend(
        f"    round {n + 1}: "
        + ", ".join(f"{name} {values[n]:.1f}" for name, values in per_round.items())
        for n in range(ROUNDS)
    )
    assert 0 == sum(tally.exhausted for tally in sides.values())


@pytest.fixture(scope="module")
def ratios(request: pytest.FixtureRequest) -> Iterator[RatioTable]:
    table = RatioTable("what escalate_after adds where nothing fails (SQLite in-memory, select(1))")
    yield table
    table.emit(request.config)


def test_happy_path_cost(benchmark: Any, ratios: RatioTable) -> None:
    """One call that commits at once, with and without escalate_after, taking turns."""
    engine = sa.create_engine("sqlite://")
    factory = sessionmaker(engine)
    statement = sa.select(sa.literal(1))

    def body(session: Any) -> Any:
        return session.execute(statement).scalar_one()

    sides = {
        "backoff": txpolicy.transactional(factory, policy=CONTENDED["backoff"])(body),
        "escalate_after=4": txpolicy.transactional(
            factory, policy=CONTENDED["escalate_after=4"]
        )(body),
    }
    benchmark.group = "escalation-happy-path"
    benchmark.name = "happy_path_interleaved"
    try:
        ratios.add_interleaved(benchmark, sides, "backoff", 20_000)
    finally:
        engine.dispose()
