"""
Retry scenarios shared by ``test_transactional_sync.py`` and ``test_transactional_async.py``.

Every scenario provokes real serialization failures on PostgreSQL, deterministically: a scope
at REPEATABLE READ reads row 1, a side connection updates row 1 and commits, then the scope
updates row 1 and PostgreSQL answers 40001. ``conflicts`` says how many body runs meet one.

Each test file implements every *form* (decorator, block, nesting, ...) in its own flavour
(threads of ``def`` or ``async def``), runs the scenario and compares the :class:`Outcome`
with the one the table expects: how many times each body ran, what was committed, which
``on_commit`` callbacks ran and what was raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

import txpolicy

REPEATABLE_READ = "REPEATABLE READ"


@dataclass(frozen=True)
class Outcome:
    """What a scenario did: body runs, committed counters, callbacks run, error raised."""

    outer_calls: int
    inner_calls: int
    row1: int
    row2: int
    callbacks: tuple[str, ...]
    error: type[BaseException] | None = None
    error_attempts: int | None = None


@dataclass(frozen=True)
class Scenario:
    """One line of the table: a form, how many conflicts it meets, and what must follow."""

    form: str
    conflicts: int
    attempts: int
    expected: Outcome


@dataclass
class State:
    """Mutable bookkeeping of one scenario run."""

    conflicts_left: int
    outer_calls: int = 0
    inner_calls: int = 0
    callbacks: list[str] = field(default_factory=list)

    def callback(self, name: str):
        """An on_commit callback that records *name* when it runs."""
        return lambda: self.callbacks.append(name)

    def take_conflict(self) -> bool:
        """Whether this body run must meet a serialization failure."""
        if self.conflicts_left > 0:
            self.conflicts_left -= 1
            return True
        return False

    def outcome(self, row1: int, row2: int, error: BaseException | None) -> Outcome:
        """The observed outcome."""
        return Outcome(
            self.outer_calls,
            self.inner_calls,
            row1,
            row2,
            tuple(self.callbacks),
            None if error is None else type(error),
            None if error is None else getattr(error, "attempts", None),
        )


def sql(table: str) -> dict[str, sa.TextClause]:
    """The statements of the scenarios, for *table*."""
    return {
        "read1": sa.text(f"SELECT n FROM {table} WHERE id = 1"),
        "bump1": sa.text(f"UPDATE {table} SET n = n + 1 WHERE id = 1"),
        "bump2": sa.text(f"UPDATE {table} SET n = n + 1 WHERE id = 2"),
        "side": sa.text(f"UPDATE {table} SET side = side + 1 WHERE id = 1"),
        "duplicate": sa.text(f"INSERT INTO {table} (id, n, side) VALUES (1, 0, 0)"),
        "rows": sa.text(f"SELECT n FROM {table} ORDER BY id"),
    }


def create_table(engine: sa.Engine, table: str) -> None:
    """Rows 1 and 2 with counters at 0."""
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, "
            "side INTEGER NOT NULL)"
        )
        conn.exec_driver_sql(f"INSERT INTO {table} (id, n, side) VALUES (1, 0, 0), (2, 0, 0)")


def drop_table(engine: sa.Engine, table: str) -> None:
    """Drop the scenario's own table."""
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")


def rows(engine: sa.Engine, table: str) -> tuple[int, int]:
    """The committed counters of rows 1 and 2."""
    with engine.connect() as conn:
        first, second = conn.execute(sql(table)["rows"]).scalars()
    return first, second


def side_update(engine: sa.Engine, table: str) -> None:
    """Another transaction updates row 1 and commits (what makes the scope's update fail)."""
    with engine.begin() as conn:
        conn.execute(sql(table)["side"])


def policy(attempts: int) -> txpolicy.RetryPolicy:
    """Retries without waiting (the tests also run in testing mode)."""
    return txpolicy.RetryPolicy(attempts=attempts, wait_initial=0.0, wait_max=0.0)


SerializationError = txpolicy.SerializationError
IntegrityError = txpolicy.IntegrityError

SCENARIOS = [
    pytest.param(
        Scenario("decorator", 0, 5, Outcome(1, 0, 1, 0, ("outer",))),
        id="decorator-no-conflict",
    ),
    pytest.param(
        Scenario("decorator", 1, 5, Outcome(2, 0, 1, 0, ("outer",))),
        id="decorator-one-conflict-retried",
    ),
    pytest.param(
        Scenario(
            "decorator",
            9,
            3,
            Outcome(3, 0, 0, 0, (), SerializationError, 3),
        ),
        id="decorator-exhausted-raises-last-error",
    ),
    pytest.param(
        Scenario("block", 2, 5, Outcome(3, 0, 1, 0, ("outer",))),
        id="block-two-conflicts-retried",
    ),
    pytest.param(
        Scenario("context_manager", 0, 5, Outcome(1, 0, 1, 0, ("outer",))),
        id="context-manager-commits",
    ),
    pytest.param(
        Scenario(
            "context_manager",
            1,
            5,
            Outcome(1, 0, 0, 0, (), SerializationError, 1),
        ),
        id="context-manager-one-attempt-only",
    ),
    pytest.param(
        Scenario("joined", 1, 5, Outcome(2, 2, 1, 1, ("outer", "inner"))),
        id="joined-inner-runs-once-per-outer-attempt",
    ),
    pytest.param(
        Scenario("joined", 9, 3, Outcome(3, 3, 0, 0, (), SerializationError, 3)),
        id="joined-attempts-not-multiplied",
    ),
    pytest.param(
        Scenario("swallowed", 1, 5, Outcome(2, 2, 1, 1, ("outer",))),
        id="joined-failure-swallowed-by-owner-still-retried",
    ),
    pytest.param(
        Scenario("savepoint_contained", 0, 5, Outcome(1, 1, 0, 1, ("outer",))),
        id="savepoint-contains-failure-and-drops-its-callbacks",
    ),
    pytest.param(
        Scenario("savepoint_uncaught", 1, 5, Outcome(2, 2, 1, 1, ("inner", "outer"))),
        id="savepoint-failure-uncaught-retries-owner",
    ),
    pytest.param(
        Scenario("requires_new", 2, 5, Outcome(1, 3, 1, 1, ("inner", "outer"))),
        id="requires-new-retries-by-itself",
    ),
]
