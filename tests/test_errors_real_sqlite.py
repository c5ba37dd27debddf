"""
Real SQLite errors, provoked on a temporary database file and classified (CONTRACT §2).

Every case runs on sqlite3, aiosqlite, and both under SQLAlchemy (``sqlite``,
``sqlite+aiosqlite``). aiosqlite raises sqlite3's own exceptions, so the shapes are shared.
Each test first asserts what the driver raised (class, extended ``sqlite_errorcode``,
message), then what ``classify_error`` and ``is_retryable_error`` make of it. Also here,
because they need no server: the provoker library refuses bad input before any I/O.
"""

from __future__ import annotations

import pathlib
import sqlite3

import pytest
import sqlalchemy as sa

from tests import provoke as p
from tests.real_error_cases import Case, Shape, check_all, params
from txpolicy import ErrorCategory as C


def lite(cls: type[BaseException], code: int, message: str | None = None) -> dict[str, Shape]:
    """sqlite3's shape of an error: its class and extended result code."""
    return {"*": Shape(cls, code, message=message)}


Operational = sqlite3.OperationalError
Integrity = sqlite3.IntegrityError

CASES = [
    Case(
        "database-is-locked",
        p.provoke_sqlite_locked,
        C.LOCK_TIMEOUT,
        lite(Operational, 5, "database is locked"),
    ),
    Case(
        "busy-snapshot",
        p.provoke_sqlite_busy_snapshot,
        C.SERIALIZATION,
        lite(Operational, 517, "database is locked"),
    ),
    Case("unique", p.provoke_sqlite_constraint, C.INTEGRITY, lite(Integrity, 2067, "UNIQUE")),
    Case(
        "primary-key",
        p.provoke_sqlite_constraint,
        C.INTEGRITY,
        lite(Integrity, 1555),
        {"kind": "primary_key"},
    ),
    Case(
        "not-null",
        p.provoke_sqlite_constraint,
        C.INTEGRITY,
        lite(Integrity, 1299, "NOT NULL"),
        {"kind": "not_null"},
    ),
    Case(
        "foreign-key",
        p.provoke_sqlite_constraint,
        C.INTEGRITY,
        lite(Integrity, 787, "FOREIGN KEY"),
        {"kind": "foreign_key"},
    ),
    Case(
        "check",
        p.provoke_sqlite_constraint,
        C.INTEGRITY,
        lite(Integrity, 275, "CHECK"),
        {"kind": "check"},
    ),
    Case("no-such-table", p.provoke_sqlite_schema, C.SCHEMA, lite(Operational, 1, "no such table")),
    Case(
        "syntax",
        p.provoke_sqlite_schema,
        C.SCHEMA,
        lite(Operational, 1, "syntax error"),
        {"kind": "syntax"},
    ),
    Case(
        "read-only",
        p.provoke_sqlite_read_only,
        C.READ_ONLY,
        lite(Operational, 8, "readonly database"),
    ),
    Case(
        "closed-database",
        p.provoke_sqlite_closed,
        C.CONNECTION,
        {
            "sqlite3": Shape(sqlite3.ProgrammingError, None, message="closed database"),
            # SQLAlchemy's adapter turns aiosqlite's ValueError into sqlite3.OperationalError.
            "sa-aiosqlite": Shape(Operational, None, message="no active connection"),
        },
        stacks=("sqlite3", "sa-sqlite", "sa-aiosqlite"),
        why_not_elsewhere="raw aiosqlite raises a plain ValueError('no active connection')",
    ),
]


@pytest.fixture
def sqlite_url(tmp_path: pathlib.Path) -> str:
    """A database file of its own for each test."""
    return f"sqlite:///{tmp_path / 'provoked.db'}"


@pytest.mark.parametrize(("stack", "case"), params(CASES, "sqlite"))
def test_real_error_is_classified(sqlite_url: str, stack: p.Stack, case: Case) -> None:
    """A real SQLite error lands in its contract category, raw and through SQLAlchemy."""
    error = case.provoke(stack, sqlite_url)

    check_all(case, stack, error)


@pytest.mark.parametrize(
    ("target", "exception"),
    [
        pytest.param("mysql+pymysql://root@127.0.0.1/test", ValueError, id="other-backend"),
        pytest.param("sqlite+aiosqlite:///x.db", ValueError, id="async-driver-in-sync-call"),
        pytest.param("oracle://scott@127.0.0.1/x", ValueError, id="unknown-driver"),
        pytest.param("sqlite://", ValueError, id="in-memory-database"),
        pytest.param(42, TypeError, id="not-a-target"),
    ],
)
def test_provoker_refuses_bad_targets_before_any_io(target: object, exception: type) -> None:
    """A provoker rejects a target it cannot run on before it opens any connection."""
    with pytest.raises(exception):
        p.provoke_sqlite_locked(target)  # type: ignore[arg-type]


def test_provoker_refuses_unknown_options(sqlite_url: str) -> None:
    """An option value a scenario does not know is a ValueError, an unknown option a TypeError."""
    with pytest.raises(ValueError, match="kind must be one of"):
        p.provoke_sqlite_constraint(sqlite_url, kind="nonsense")
    with pytest.raises(TypeError):
        p.provoke_sqlite_constraint(sqlite_url, nonsense=True)


def test_scenario_without_error_is_not_provoked(sqlite_url: str) -> None:
    """A scenario that ends without an error raises NotProvoked instead of returning nothing."""

    def harmless() -> p.Scenario:
        yield p.Run("a", "SELECT 1")
        return (yield p.Run("a", "SELECT 2", capture=True))

    with pytest.raises(p.NotProvoked):
        p.provoke(sqlite_url, harmless())


def test_provoker_leaves_no_table_behind(sqlite_url: str) -> None:
    """Every table a scenario creates is dropped afterwards, on a fresh connection."""
    p.provoke_sqlite_constraint(sqlite_url, kind="foreign_key")

    engine = sa.create_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            tables = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")
            assert [] == tables.all()
    finally:
        engine.dispose()


def test_provoker_closes_every_connection(sqlite_url: str) -> None:
    """Nothing stays open: after a provocation, an exclusive lock is immediately available."""
    p.provoke_sqlite_locked(sqlite_url)

    conn = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("ROLLBACK")
    finally:
        conn.close()
