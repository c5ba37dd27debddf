"""
``txpolicy demo``: a contended money-transfer workload through ``@transactional``.

Worker threads move money between a handful of accounts. Each transfer reads the source
balance, updates both accounts and writes a ledger row with a unique id, in one transaction,
so the workload contends for real:

- SQLite (the default, an embedded file in a temporary directory): WAL mode, deferred
  ``BEGIN`` and a 50 ms busy timeout, so that writers meet real ``database is locked``
  (LOCK_TIMEOUT) and busy-snapshot (SERIALIZATION) errors;
- PostgreSQL (``--url postgresql://...``): SERIALIZABLE, so writers meet real 40001s;
- MariaDB / MySQL (``--url mysql://...``): accounts updated in random order, so writers meet
  real 1213 deadlocks.

At the end the demo checks the invariant: the sum of the balances is unchanged, and every
committed transfer is in the ledger exactly once and accounts for the balances. It exits 1 if
the invariant breaks, 0 otherwise.
"""

from __future__ import annotations

import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from ._exceptions import TransactionError
from ._hooks import AttemptRecord, add_hook
from ._policy import RetryPolicy
from ._transactional import transactional

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterator

    from typing_extensions import Self

__all__ = ["main"]

DEFAULT_WORKERS = 8
DEFAULT_TRANSACTIONS = 400  # 8 workers x 50
ACCOUNTS = 5
INITIAL = 1_000
POLICY = RetryPolicy(attempts=50, wait_initial=0.005, wait_max=0.25, deadline=60.0)
_DRIVERS = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}


@dataclass(frozen=True)
class Transfer:
    """One planned transfer."""

    id: str
    src: int
    dst: int
    amount: int


@dataclass
class Tally:
    """What happened so far; shared by the workers, the hooks and the progress display."""

    planned: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    committed: list[Transfer] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    retries: Counter[str] = field(default_factory=Counter)
    gave_up: Counter[str] = field(default_factory=Counter)

    def retried(self, record: AttemptRecord) -> None:
        with self.lock:
            self.retries[str(record.category)] += 1

    def done(self, transfer: Transfer, seconds: float) -> None:
        with self.lock:
            self.committed.append(transfer)
            self.latencies.append(seconds)

    def failed(self, error: BaseException) -> None:
        with self.lock:
            self.gave_up[str(getattr(error, "category", type(error).__name__))] += 1

    def line(self) -> str:
        with self.lock:
            finished = len(self.committed) + sum(self.gave_up.values())
            return (
                f"{finished}/{self.planned} transfers, {len(self.committed)} committed, "
                f"{sum(self.retries.values())} retries, {sum(self.gave_up.values())} gave up"
            )


@dataclass(frozen=True)
class Verdict:
    """The balance invariant, checked against the database."""

    ok: bool
    total: int
    expected_total: int
    ledger_rows: int
    problems: tuple[str, ...]


class Bank:
    """The demo's two tables on one engine, with every statement the workload runs."""

    def __init__(self, engine: sa.Engine, suffix: str) -> None:
        self.engine = engine
        metadata = sa.MetaData()
        self.accounts = sa.Table(
            f"txpolicy_demo_accounts_{suffix}",
            metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("balance", sa.Integer, nullable=False),
        )
        self.ledger = sa.Table(
            f"txpolicy_demo_ledger_{suffix}",
            metadata,
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("src", sa.Integer, nullable=False),
            sa.Column("dst", sa.Integer, nullable=False),
            sa.Column("amount", sa.Integer, nullable=False),
        )
        self.metadata = metadata
        account = self.accounts.c
        self.read = sa.select(account.balance).where(account.id == sa.bindparam("account"))
        self.move = (
            sa.update(self.accounts)
            .where(account.id == sa.bindparam("account"))
            .values(balance=account.balance + sa.bindparam("delta"))
        )
        self.record = sa.insert(self.ledger)

    def create(self) -> None:
        """Both tables, every account at INITIAL."""
        with self.engine.begin() as conn:
            self.metadata.create_all(conn)
            conn.execute(
                sa.insert(self.accounts),
                [{"id": i, "balance": INITIAL} for i in range(1, ACCOUNTS + 1)],
            )

    def drop(self) -> None:
        """Remove both tables (server databases are shared)."""
        with self.engine.begin() as conn:
            self.metadata.drop_all(conn)

    def verify(self, committed: list[Transfer]) -> Verdict:
        """Sum unchanged; the ledger is exactly the committed transfers; balances match it."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(self.accounts.c.id, self.accounts.c.balance))
            balances: dict[int, int] = {row.id: row.balance for row in rows}
            ledger = list(conn.execute(sa.select(self.ledger.c.id)).scalars())
        expected = dict.fromkeys(range(1, ACCOUNTS + 1), INITIAL)
        for transfer in committed:
            expected[transfer.src] -= transfer.amount
            expected[transfer.dst] += transfer.amount
        problems = []
        total, expected_total = sum(balances.values()), ACCOUNTS * INITIAL
        if total != expected_total:
            problems.append(f"the balances sum to {total}, not {expected_total}")
        if sorted(ledger) != sorted(t.id for t in committed):
            problems.append(
                f"the ledger has {len(ledger)} rows for {len(committed)} committed transfers"
            )
        if balances != expected:
            problems.append(f"the balances are {balances}, the ledger says {expected}")
        return Verdict(not problems, total, expected_total, len(ledger), tuple(problems))


def _sqlite_engine(path: Path, workers: int) -> sa.Engine:
    """WAL, deferred BEGIN issued by us (pysqlite's own BEGIN skips reads), 50 ms busy timeout."""
    engine = sa.create_engine(
        f"sqlite:///{path}",
        connect_args={"timeout": 0.05, "check_same_thread": False},
        pool_size=workers,
        max_overflow=0,
    )

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: object) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


def _server_engine(url: str, workers: int) -> sa.Engine:
    """A sync driver for ``postgresql://`` and ``mysql://`` URLs, one connection per worker."""
    parsed = make_url(url)
    drivername = _DRIVERS.get(parsed.drivername, parsed.drivername)
    return sa.create_engine(
        parsed.set(drivername=drivername), pool_size=workers, max_overflow=0
    )


def _plan(count: int, workers: int, seed: int | None = None) -> list[list[Transfer]]:
    """*count* random transfers between the accounts, dealt to *workers* workers."""
    rng = random.Random(seed)  # noqa: S311 - a workload, not a secret
    lists: list[list[Transfer]] = [[] for _ in range(workers)]
    for index in range(count):
        src, dst = rng.sample(range(1, ACCOUNTS + 1), 2)
        lists[index % workers].append(Transfer(uuid.uuid4().hex, src, dst, rng.randint(1, 100)))
    return lists


def _transfer_function(bank: Bank) -> Callable[[Transfer], None]:
    """The transfer, decorated; the isolation level makes each database contend its own way."""
    dialect = bank.engine.dialect.name
    # PostgreSQL: SERIALIZABLE, and rows updated in id order, so that writers fail with 40001
    # at once rather than deadlock (detected only after deadlock_timeout, 1 s by default).
    # MariaDB: rows updated in transfer order, so that writers deadlock (detected at once).
    # SQLite: a read first, so that a writer whose snapshot went stale gets BUSY_SNAPSHOT.
    postgres = dialect == "postgresql"
    isolation = "SERIALIZABLE" if postgres else None
    read_first = dialect != "mysql"

    factory = sessionmaker(bank.engine)

    @transactional(factory, isolation_level=isolation, policy=POLICY, operation_type="transfer")
    def transfer(session: Session, t: Transfer) -> None:
        if read_first:
            session.execute(bank.read, {"account": t.src}).scalar_one()
        moves = [(t.src, -t.amount), (t.dst, t.amount)]
        if postgres:
            moves.sort()
        for account, delta in moves:
            session.execute(bank.move, {"delta": delta, "account": account})
        session.execute(bank.record, {"id": t.id, "src": t.src, "dst": t.dst, "amount": t.amount})

    return transfer


def run_workload(bank: Bank, plan: list[list[Transfer]], tally: Tally) -> float:
    """Run the plan with one thread per worker list; the wall time in seconds."""
    transfer = _transfer_function(bank)

    def worker(transfers: list[Transfer]) -> None:
        for t in transfers:
            started = time.perf_counter()
            try:
                transfer(t)
            except TransactionError as exc:
                tally.failed(exc)
            else:
                tally.done(t, time.perf_counter() - started)

    remove = add_hook("retry", tally.retried)
    started = time.perf_counter()
    try:
        threads = [threading.Thread(target=worker, args=(ts,), daemon=True) for ts in plan]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        remove()
    return time.perf_counter() - started


class _Progress:
    """A live line on a terminal; a few plain lines (every quarter) otherwise."""

    def __init__(self, tally: Tally, stream: TextIO) -> None:
        self.tally = tally
        self.stream = stream
        self.tty = stream.isatty()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.quarters_shown = 0

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self._show(final=True)

    def _run(self) -> None:
        while not self.stop.wait(0.1):
            self._show(final=False)

    def _show(self, *, final: bool) -> None:
        if self.tty:
            end = "\n" if final else ""
            self.stream.write(f"\r\x1b[K  {self.tally.line()}{end}")
            self.stream.flush()
            return
        with self.tally.lock:
            finished = len(self.tally.committed) + sum(self.tally.gave_up.values())
        quarters = 4 * finished // max(1, self.tally.planned)
        if quarters > self.quarters_shown or (final and quarters < 4):
            self.quarters_shown = max(quarters, self.quarters_shown + 1)
            self.stream.write(f"  {self.tally.line()}\n")
            self.stream.flush()


def _percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def _report(tally: Tally, verdict: Verdict, seconds: float, out: TextIO) -> None:
    """The summary on stdout."""
    retries = ", ".join(f"{name} {count}" for name, count in sorted(tally.retries.items()))
    gave_up = ", ".join(f"{name} {count}" for name, count in sorted(tally.gave_up.items()))
    ms = [s * 1000 for s in tally.latencies]
    committed = len(tally.committed)
    lines = [
        f"  committed   {committed}",
        (f"  retries     {sum(tally.retries.values())}" + (f"  ({retries})" if retries else "")),
        (f"  gave up     {sum(tally.gave_up.values())}" + (f"  ({gave_up})" if gave_up else "")),
        (
            f"  latency     p50 {_percentile(ms, 0.5):.1f} ms  "
            f"p95 {_percentile(ms, 0.95):.1f} ms  p99 {_percentile(ms, 0.99):.1f} ms"
        ),
        f"  wall time   {seconds:.2f} s  ({committed / seconds if seconds else 0:.0f} commits/s)",
    ]
    if verdict.ok:
        lines.append(
            f"  invariant   OK: the balances sum to {verdict.total} as before, and the "
            f"{verdict.ledger_rows} committed transfers were each applied exactly once"
        )
    else:
        lines.append("  invariant   BROKEN: " + "; ".join(verdict.problems))
    out.write("\n".join(lines) + "\n")


@dataclass
class _Target:
    """Where the demo runs, and how to clean up."""

    bank: Bank
    label: str


def _open_target(url: str | None, workers: int, tmp: Path) -> _Target:
    """The SQLite file in *tmp*, or the server of *url* (tables with a unique suffix)."""
    suffix = uuid.uuid4().hex[:8]
    if url is None:
        path = tmp / "txpolicy-demo.sqlite"
        return _Target(Bank(_sqlite_engine(path, workers), suffix), f"SQLite file {path}")
    engine = _server_engine(url, workers)
    return _Target(Bank(engine, suffix), engine.url.render_as_string(hide_password=True))


def _iter_plan_size(args: argparse.Namespace) -> Iterator[int]:
    """Workers and transfers, with the defaults for what the command line left out."""
    yield args.workers or DEFAULT_WORKERS
    yield args.transactions or DEFAULT_TRANSACTIONS


def main(args: argparse.Namespace) -> int:
    """
    Run the demo (``txpolicy demo [--url URL] [--workers N] [--transactions N]``).

    Args:
        args: ``url`` (``None``: an embedded SQLite file), ``workers`` (threads, default 8)
            and ``transactions`` (transfers in total, default 400); ``None`` means default.

    Returns:
        0 when the invariant holds, 1 when it breaks.

    .. versionadded:: 0.1.0
    """
    workers, count = _iter_plan_size(args)
    out, err = sys.stdout, sys.stderr
    with tempfile.TemporaryDirectory(prefix="txpolicy-demo-") as tmp:
        target = _open_target(getattr(args, "url", None), workers, Path(tmp))
        bank = target.bank
        try:
            bank.create()
            out.write(
                f"txpolicy demo: {count} transfers by {workers} workers between {ACCOUNTS} "
                f"accounts on {target.label}\n"
            )
            out.flush()
            tally = Tally(planned=count)
            with _Progress(tally, err):
                seconds = run_workload(bank, _plan(count, workers), tally)
            verdict = bank.verify(tally.committed)
            _report(tally, verdict, seconds, out)
        finally:
            try:
                bank.drop()
            finally:
                bank.engine.dispose()
    return 0 if verdict.ok else 1
