"""
Helpers shared by the peer, retry-cost and contention benchmarks.

Each module compares several sides of one question in one run; :class:`RatioTable`
records every side's median, stores its ratio to the group's baseline in the JSON
(``extra_info["ratio_to_baseline"]``) and prints the table at the end of the module.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import backoff
import pytest
import sqlalchemy as sa
import stamina
import tenacity
from sqlalchemy.engine import make_url

import txpolicy
from txpolicy._bench import _timed as bench_timed

POSTGRES_URL = os.environ.get(
    "TXPOLICY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

# Retrying on the driver's OperationalError is what a hand-written wrapper does: the
# errors we provoke (40001, 40P01, 55P03, "database is locked") all arrive as one.
RETRY_ON = sa.exc.OperationalError
ATTEMPTS = 5
WAIT_INITIAL = 0.05
WAIT_MAX = 2.0


def postgres_url() -> str:
    """The PostgreSQL URL, or skip the benchmark when the server does not answer."""
    url = make_url(POSTGRES_URL)
    try:
        with socket.create_connection((url.host or "127.0.0.1", url.port or 5432), timeout=3):
            pass
    except OSError as exc:
        pytest.skip(f"PostgreSQL at {url.host}:{url.port} is unreachable: {exc}")
    return POSTGRES_URL


def unique_table() -> str:
    """A table name no other benchmark or test uses."""
    return f"bench_{uuid.uuid4().hex[:12]}"


def create_counter_table(conn: sa.Connection, name: str) -> None:
    """One table of ``(id, n)`` rows with row 1 present: the happy-path body reads it."""
    conn.exec_driver_sql(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    conn.exec_driver_sql(f"INSERT INTO {name} (id, n) VALUES (1, 0)")


def drop_table(engine: sa.Engine, name: str) -> None:
    """Drop a table this module created."""
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")


class RatioTable:
    """
    The medians (and minimums) of one module's benchmarks, as ratios to each group's baseline.

    The median is the headline figure; the minimum is printed next to it because it is the
    figure least disturbed by other load on a shared machine.
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: list[tuple[str, str, float, float, str]] = []
        self.baselines: dict[tuple[str, str], tuple[float, float]] = {}
        self.interleaved: list[str] = []

    def add(self, benchmark: Any, baseline: str) -> None:
        """Record *benchmark*'s figures; *baseline* is the name of its group's reference side."""
        stats = getattr(benchmark, "stats", None)
        if stats is None:  # --benchmark-disable: the benchmark ran once, as a test
            return
        group, name = benchmark.group or "", benchmark.name
        median, minimum = stats.stats.median, stats.stats.min
        self.baselines[group, name] = (median, minimum)
        self.rows.append((group, name, median, minimum, baseline))
        benchmark.extra_info["baseline"] = baseline
        base = self.baselines.get((group, baseline))
        if base:
            benchmark.extra_info["ratio_to_baseline"] = round(median / base[0], 4)
            benchmark.extra_info["min_ratio_to_baseline"] = round(minimum / base[1], 4)

    def lines(self) -> list[str]:
        """The table, one line per side, grouped."""
        out = [
            f"{self.title}: per call, ratio to the group's baseline",
            f"    {'':<44} {'median':>11} {'ratio':>6} {'min':>11} {'ratio':>6}",
        ]
        current = None
        for group, name, median, minimum, baseline in self.rows:
            if group != current:
                out.append(f"  [{group}] baseline {baseline}")
                current = group
            base = self.baselines.get((group, baseline))
            ratios = (
                (f"{median / base[0]:6.3f}", f"{minimum / base[1]:6.3f}") if base else ("-", "-")
            )
            out.append(
                f"    {name:<44} {median * 1e6:8.1f} µs {ratios[0]:>6}"
                f" {minimum * 1e6:8.1f} µs {ratios[1]:>6}"
            )
        return out

    def add_interleaved(
        self, benchmark: Any, sides: dict[str, Callable[[], object]], baseline: str, calls: int
    ) -> dict[str, float]:
        """
        Time *sides* taking turns, as ``txpolicy bench`` does, in one pytest-benchmark round.

        The sides of a group run one after the other in pytest-benchmark, so load that comes
        and goes (other test suites on a shared machine) can favour one side. Here each side
        runs ``calls // 10`` calls in each of 10 rounds, in turn, so drift hits them alike.
        The per-call medians (µs) and their ratios go into ``extra_info`` and the table.
        """
        medians: dict[str, float] = {}

        def measure() -> None:
            timed = bench_timed(list(sides.values()), calls, max(10, calls // 10))
            medians.update(zip(sides, timed, strict=True))

        benchmark.pedantic(measure, rounds=1, iterations=1)
        base = medians[baseline]
        benchmark.extra_info["baseline"] = baseline
        benchmark.extra_info["interleaved_median_us"] = {k: round(v, 2) for k, v in medians.items()}
        benchmark.extra_info["interleaved_ratio"] = {
            k: round(v / base, 4) for k, v in medians.items()
        }
        self.interleaved.append(
            f"  [{benchmark.name}] the same sides taking turns, {calls} calls each; "
            f"baseline {baseline}"
        )
        self.interleaved.extend(
            f"    {name:<44} {median:8.1f} µs {median / base:6.3f}"
            for name, median in medians.items()
        )
        return medians

    def emit(self, config: pytest.Config) -> None:
        """Print the table past pytest's capture."""
        emit_lines(config, (self.lines() if self.rows else []) + self.interleaved)


def emit_lines(config: pytest.Config, lines: list[str]) -> None:
    """Write *lines* to the terminal, past pytest's output capture (from a fixture teardown)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not lines:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for line in lines:
            reporter.write_line(line)


def sync_sides(factory: Any, statement: Any) -> dict[str, Callable[[], Any]]:
    """The same body (one read by primary key) in each wrapper, sync."""

    def body(session: Any) -> Any:
        return session.execute(statement).scalar_one()

    def bare() -> Any:
        with factory.begin() as session:
            return body(session)

    return {
        "bare": bare,
        "transactional": txpolicy.transactional(factory)(body),
        "tenacity": tenacity.retry(
            stop=tenacity.stop_after_attempt(ATTEMPTS),
            wait=tenacity.wait_random_exponential(multiplier=WAIT_INITIAL, max=WAIT_MAX),
            retry=tenacity.retry_if_exception_type(RETRY_ON),
            reraise=True,
        )(bare),
        "stamina": stamina.retry(
            on=RETRY_ON, attempts=ATTEMPTS, wait_initial=WAIT_INITIAL, wait_max=WAIT_MAX
        )(bare),
        "backoff": backoff.on_exception(
            backoff.expo, RETRY_ON, max_tries=ATTEMPTS, factor=WAIT_INITIAL, max_value=WAIT_MAX
        )(bare),
    }


def async_sides(factory: Any, statement: Any) -> dict[str, Callable[[], Awaitable[Any]]]:
    """The same body in each wrapper, async."""

    async def body(session: Any) -> Any:
        return (await session.execute(statement)).scalar_one()

    async def bare() -> Any:
        async with factory.begin() as session:
            return await body(session)

    return {
        "bare": bare,
        "transactional": txpolicy.transactional(factory)(body),
        "tenacity": tenacity.retry(
            stop=tenacity.stop_after_attempt(ATTEMPTS),
            wait=tenacity.wait_random_exponential(multiplier=WAIT_INITIAL, max=WAIT_MAX),
            retry=tenacity.retry_if_exception_type(RETRY_ON),
            reraise=True,
        )(bare),
        "stamina": stamina.retry(
            on=RETRY_ON, attempts=ATTEMPTS, wait_initial=WAIT_INITIAL, wait_max=WAIT_MAX
        )(bare),
        "backoff": backoff.on_exception(
            backoff.expo, RETRY_ON, max_tries=ATTEMPTS, factor=WAIT_INITIAL, max_value=WAIT_MAX
        )(bare),
    }
