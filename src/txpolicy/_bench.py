"""
``txpolicy bench``: what a transaction and a retry cost on the user's own database.

Two measurements, each side by side with its baseline:

- **happy path**: one read by primary key on an already open session (the body alone), in
  a bare ``sessionmaker.begin()`` block (the baseline), and through ``@transactional``;
- **one retry**: a read then a write whose first attempt meets a real, provoked failure and
  whose second attempt commits, in a hand-written ``try``/``except`` loop (the baseline) and
  through ``@transactional`` with zero waits (so that sleeping is not measured).

The failure is the cheapest real one each database offers: a serialization failure
(40001) at REPEATABLE READ on PostgreSQL, ``database is locked`` (SQLite 5) on SQLite, a
``NOWAIT`` lock failure (1205 on MariaDB, 3572 on MySQL) on MySQL/MariaDB. A side connection
in autocommit mode provides the conflicting update or lock.

Every side runs a fixed number of calls after a warmup; the sides take turns in rounds so
that drift (other load, caches, autovacuum) hits them alike. Each call is timed with
``time.perf_counter_ns``; the figure is the median. The command creates one uniquely named
table and drops it at the end.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as _sa
from sqlalchemy import orm as _orm

from ._errors import classify_error
from ._exceptions import TransactionError
from ._policy import RetryPolicy
from ._transactional import transactional

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterator, Sequence

__all__ = ["BenchTarget", "Measurement", "Report", "main", "run"]

HAPPY_ITERATIONS = 1000
RETRY_ITERATIONS = 200
ROUNDS = 10
NO_WAIT = RetryPolicy(attempts=2, wait_initial=0.0, wait_max=0.0, deadline=None)

@attrs.frozen
class _Conflict:
    """How one database is made to fail, for real, between the body's read and its write."""

    isolation_level: str | None
    interfere: tuple[str | _sa.Executable, ...]  # on the side connection, after the read
    nowait: bool  # the body takes a row lock with NOWAIT before writing (fails at once)
    release: tuple[str, ...]  # on the side connection, after the failure
    description: str


def _conflict_for(dialect: _sa.Dialect, table: _sa.Table) -> _Conflict | None:
    """The cheapest real conflict of *dialect*, or ``None`` when we know none."""
    row = table.c.id == 1
    if dialect.name == "postgresql":
        return _Conflict(
            "REPEATABLE READ",
            (_sa.update(table).where(row).values(n=table.c.n + 1),),
            nowait=False,
            release=(),
            description="serialization failure: a REPEATABLE READ transaction writes a row "
            "that another transaction updated since its snapshot",
        )
    if dialect.name == "sqlite":
        return _Conflict(
            None,
            ("BEGIN IMMEDIATE",),
            nowait=False,
            release=("ROLLBACK",),
            description='"database is locked": a write while another connection holds the '
            "write lock, with no busy timeout",
        )
    if dialect.name in ("mysql", "mariadb"):
        return _Conflict(
            None,
            ("BEGIN", _sa.select(table.c.n).where(row).with_for_update()),
            nowait=True,
            release=("ROLLBACK",),
            description="lock not available: SELECT ... FOR UPDATE NOWAIT on a row that "
            "another transaction has locked",
        )
    return None


def _tune_sqlite(dbapi_connection: Any, _record: object) -> None:
    """WAL without fsync at every commit: what a tuned SQLite application runs with."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class BenchTarget:
    """
    A database prepared for the measurements: engine, table, side connection, bodies.

    Shared by ``txpolicy bench`` and the retry-cost benchmark. Close it when done: it drops
    its table and disposes of its engine.

    Args:
        url: A SQLAlchemy URL with a sync driver.
        tune_sqlite: Put a SQLite database in WAL mode with ``synchronous=NORMAL`` (a lasting
            change to the file: only for files the command created itself).
        connect_args: Extra driver arguments (the benchmarks turn PostgreSQL's
            ``synchronous_commit`` off for their own sessions with them).
    """

    def __init__(
        self,
        url: str | _sa.URL,
        *,
        tune_sqlite: bool = False,
        connect_args: dict[str, Any] | None = None,
    ) -> None:
        parsed = _sa.make_url(url)
        if parsed.get_dialect().is_async:
            raise ValueError(
                f"txpolicy bench measures sync drivers; {parsed.drivername!r} is async "
                "(try postgresql+psycopg://, mysql+pymysql:// or sqlite:///)"
            )
        sqlite = parsed.get_backend_name() == "sqlite"
        if sqlite and parsed.database in (None, "", ":memory:"):
            raise ValueError(
                "an in-memory SQLite database cannot be shared with the side connection that "
                "provokes the failure; give a file (sqlite:///path/to/file.db)"
            )
        # SQLite: fail at once on a held lock; the provoked failure must not wait 5 s.
        args = {"timeout": 0} if sqlite else {}
        self.engine = _sa.create_engine(parsed, connect_args={**args, **(connect_args or {})})
        self.tuned = sqlite and tune_sqlite
        if self.tuned:
            _sa.event.listen(self.engine, "connect", _tune_sqlite)
        self.table = _sa.Table(
            f"txpolicy_bench_{uuid.uuid4().hex[:12]}",
            _sa.MetaData(),
            _sa.Column("id", _sa.Integer, primary_key=True, autoincrement=False),
            _sa.Column("n", _sa.Integer, nullable=False),
        )
        with self.engine.begin() as conn:
            self.table.create(conn)
            conn.execute(_sa.insert(self.table).values(id=1, n=0))
        self.attempts = 0
        self._armed = False
        self._side: _sa.Connection | None = None
        self.dialect = self.engine.dialect
        self.conflict = _conflict_for(self.dialect, self.table)
        self.factory = _orm.sessionmaker(self.engine)
        isolation = None if self.conflict is None else self.conflict.isolation_level
        retry_engine = (
            self.engine.execution_options(isolation_level=isolation) if isolation else self.engine
        )
        self.retry_factory = _orm.sessionmaker(retry_engine)
        row = self.table.c.id == 1
        self._read = _sa.select(self.table.c.n).where(row)
        self._write = _sa.update(self.table).where(row).values(n=self.table.c.n + 1)
        self._lock = self._read.with_for_update(nowait=True)
        self._nowait = self.conflict is not None and self.conflict.nowait

    def read(self, session: _orm.Session) -> int:
        """The happy-path body: one row by primary key."""
        value: int = session.execute(self._read).scalar_one()
        return value

    def arm(self) -> None:
        """Make the next call of :meth:`write` fail for real, once."""
        self._armed = True

    def write(self, session: _orm.Session) -> None:
        """The retried body: read, (provoke a conflict when armed,) write."""
        self.attempts += 1
        session.execute(self._read)
        if not self._armed:
            self._lock_and_write(session)
            return
        self._armed = False
        conflict = self.conflict
        assert conflict is not None
        side = self._side_connection()
        for step in conflict.interfere:
            if isinstance(step, str):
                side.exec_driver_sql(step)
            else:
                side.execute(step)
        try:
            self._lock_and_write(session)
        finally:
            for sql in conflict.release:
                side.exec_driver_sql(sql)

    def _lock_and_write(self, session: _orm.Session) -> None:
        """The write (after a NOWAIT row lock where that is how the conflict shows)."""
        if self._nowait:
            session.execute(self._lock)
        session.execute(self._write)

    def _side_connection(self) -> _sa.Connection:
        """The connection that provides the conflicting update or lock (autocommit)."""
        if self._side is None:
            self._side = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._side

    def describe(self) -> dict[str, str]:
        """Database and driver, for the report."""
        version = self.dialect.server_version_info
        return {
            "url": self.engine.url.render_as_string(hide_password=True),
            "dialect": self.dialect.name,
            "driver": self.dialect.driver,
            "server_version": ".".join(str(part) for part in version or ()),
            "settings": "WAL, synchronous=NORMAL" if self.tuned else "",
        }

    def close(self) -> None:
        """Drop the table and dispose of the engine."""
        try:
            if self._side is not None:
                self._side.close()
            with self.engine.begin() as conn:
                self.table.drop(conn, checkfirst=True)
        finally:
            self.engine.dispose()


@attrs.frozen
class Measurement:
    """One side of one comparison."""

    section: str
    name: str
    label: str
    median_us: float
    ratio: float
    baseline: str
    calls: int


@attrs.frozen
class Report:
    """Everything ``txpolicy bench`` prints."""

    database: dict[str, str]
    failure: dict[str, str | None] | None
    rounds: int
    measurements: tuple[Measurement, ...]

    def as_dict(self) -> dict[str, Any]:
        """The JSON document of ``--json``."""
        return {
            "database": self.database,
            "environment": {
                "python": platform.python_version(),
                "sqlalchemy": _sa.__version__,
                "platform": platform.platform(),
            },
            "rounds": self.rounds,
            "unit": "microseconds per call (median)",
            "failure": self.failure,
            "results": [attrs.asdict(m) for m in self.measurements],
        }


def _timed(calls: Sequence[Callable[[], object]], iterations: int, warmup: int) -> list[float]:
    """Median µs per call of each of *calls*, which take turns in :data:`ROUNDS` rounds."""
    for call in calls:
        for _ in range(warmup):
            call()
    samples: list[list[int]] = [[] for _ in calls]
    per_round = max(1, iterations // ROUNDS)
    clock = time.perf_counter_ns
    for _ in range(ROUNDS):
        for call, sample in zip(calls, samples, strict=True):
            for _ in range(per_round):
                start = clock()
                call()
                sample.append(clock() - start)
    return [statistics.median(sample) / 1000 for sample in samples]


def _section(
    section: str,
    sides: Sequence[tuple[str, str, Callable[[], object]]],
    baseline: str,
    iterations: int,
    warmup: int,
) -> Iterator[Measurement]:
    """Time *sides* (name, label, call) together; ratios are to the side named *baseline*."""
    medians = _timed([call for _, _, call in sides], iterations, warmup)
    base = dict(zip([name for name, _, _ in sides], medians, strict=True))[baseline]
    calls = max(1, iterations // ROUNDS) * ROUNDS
    for (name, label, _), median in zip(sides, medians, strict=True):
        yield Measurement(section, name, label, median, median / base, baseline, calls)


def _happy_path(target: BenchTarget, iterations: int) -> Iterator[Measurement]:
    """The body alone, in a bare ``sessionmaker.begin()`` block, and through ``@transactional``."""
    factory = target.factory

    def bare() -> int:
        with factory.begin() as session:
            return target.read(session)

    decorated = transactional(factory)(target.read)
    with factory() as open_session, open_session.begin():
        yield from _section(
            "happy_path",
            [
                (
                    "no_transaction",
                    "the body alone, on an open session",
                    lambda: target.read(open_session),
                ),
                ("bare", "bare sessionmaker.begin()", bare),
                ("transactional", "@transactional", decorated),
            ],
            "bare",
            iterations,
            warmup=max(10, iterations // 10),
        )


def _one_retry(target: BenchTarget, iterations: int) -> Iterator[Measurement]:
    """A hand-written loop and ``@transactional`` (zero waits), each meeting one real failure."""
    factory = target.retry_factory

    def hand_written() -> None:
        try:
            with factory.begin() as session:
                target.write(session)
        except _sa.exc.DBAPIError:
            with factory.begin() as session:
                target.write(session)

    decorated = transactional(factory, policy=NO_WAIT)(target.write)

    def armed(call: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            target.arm()
            return call()

        return run

    warmup = max(2, iterations // 20)
    before = target.attempts
    results = list(
        _section(
            "one_retry",
            [
                ("hand_written", "hand-written try/except loop", armed(hand_written)),
                ("transactional", "@transactional (no wait)", armed(decorated)),
            ],
            "hand_written",
            iterations,
            warmup,
        )
    )
    calls = 2 * (warmup + results[0].calls)  # both sides
    if target.attempts - before != 2 * calls:  # each call: one failed attempt, one commit
        raise RuntimeError(
            f"expected {2 * calls} attempts for {calls} calls, saw {target.attempts - before}: "
            "the provoked failure did not happen as planned"
        )
    yield from results


def _failure_info(target: BenchTarget) -> dict[str, str | None] | None:
    """Provoke the failure once more, outside any loop, and describe what was raised."""
    conflict = target.conflict
    if conflict is None:
        return None
    target.arm()
    try:
        with target.retry_factory.begin() as session:
            target.write(session)
    except _sa.exc.DBAPIError as exc:
        classified = classify_error(exc)
        if not isinstance(classified, TransactionError):  # pragma: no cover - defensive
            raise
        vendor_code = classified.vendor_code
        return {
            "description": conflict.description,
            "category": classified.category.value,
            "exception": type(classified).__name__,
            "sqlstate": classified.sqlstate,
            "vendor_code": None if vendor_code is None else str(vendor_code),
        }
    raise RuntimeError("the provoked failure did not happen: the write succeeded")


def run(
    url: str | _sa.URL,
    *,
    happy_iterations: int = HAPPY_ITERATIONS,
    retry_iterations: int = RETRY_ITERATIONS,
    tune_sqlite: bool = False,
) -> Report:
    """
    Measure the happy path and one retry on the database at *url*.

    Args:
        url: A SQLAlchemy URL with a sync driver.
        happy_iterations: Calls per side for the happy path.
        retry_iterations: Calls per side for the one-retry comparison.
        tune_sqlite: See :class:`BenchTarget`.

    Returns:
        The report; it has no one-retry figures for databases with no known conflict.
    """
    target = BenchTarget(url, tune_sqlite=tune_sqlite)
    try:
        measurements = list(_happy_path(target, happy_iterations))
        failure = _failure_info(target)
        if failure is not None:
            measurements.extend(_one_retry(target, retry_iterations))
        return Report(target.describe(), failure, ROUNDS, tuple(measurements))
    finally:
        target.close()


_TITLES = {
    "happy_path": "happy path: one row read by primary key, nothing fails",
    "one_retry": "one retry: the first attempt fails for real, the second commits",
}


def _describe_failure(failure: dict[str, str | None]) -> str:
    """``lock_timeout (SQLSTATE HY000, code 1205): …`` for the table."""
    codes = [
        f"{label} {failure[key]}"
        for key, label in (("sqlstate", "SQLSTATE"), ("vendor_code", "code"))
        if failure[key] is not None
    ]
    return f"{failure['category']} ({', '.join(codes) or 'no code'}): {failure['description']}"


def render(report: Report) -> str:
    """The human-readable table."""
    db = report.database
    version = f" {db['server_version']}" if db["server_version"] else ""
    lines = [
        f"txpolicy bench: {db['dialect']}{version} via {db['driver']} at {db['url']}",
        f"median per call; the sides take turns in {report.rounds} rounds",
    ]
    section = None
    for m in report.measurements:
        if m.section != section:
            section = m.section
            lines += ["", f"{_TITLES[section]:<58} {'µs':>10} {'ratio':>7}"]
            if section == "one_retry" and report.failure is not None:
                lines.append(f"  failure: {_describe_failure(report.failure)}")
        mark = " (baseline)" if m.name == m.baseline else ""
        lines.append(f"  {m.label + mark:<56} {m.median_us:>10.1f} {m.ratio:>7.3f}")
    if report.failure is None:
        lines += [
            "",
            f"one retry: not measured (no known way to provoke a failure on {db['dialect']})",
        ]
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    """
    Run ``txpolicy bench [--url URL] [--json]``.

    Args:
        args: ``url`` (``None``: a SQLite file in a temporary directory) and ``json``.

    Returns:
        The exit status: 0, or 1 when the database could not be measured.
    """
    options = {
        key: value
        for key in ("happy_iterations", "retry_iterations")
        if (value := getattr(args, key, None)) is not None
    }
    with tempfile.TemporaryDirectory(prefix="txpolicy-bench-") as tmp:
        url = args.url or f"sqlite:///{os.path.join(tmp, 'bench.db')}"  # noqa: PTH118 - a URL
        try:
            report = run(url, tune_sqlite=args.url is None, **options)
        except (ValueError, _sa.exc.SQLAlchemyError, RuntimeError) as exc:
            sys.stderr.write(f"txpolicy bench: {exc}\n")
            return 1
    if args.json:
        sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(render(report))
    return 0
