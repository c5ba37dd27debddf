"""
``classify_error`` on real exception objects, one benchmark per category, raw and wrapped.

Each error is provoked once on the real server (``tests/provoke.py`` scenarios: two
connections racing for a deadlock, REPEATABLE READ plus a concurrent update, NOWAIT, a
terminated backend, ...) and kept for the module; the "wrapped" variant is the same failure
as SQLAlchemy raised it. Beside them, per dialect, the *floor*: reading the code attribute
plus one dict lookup, the least any classifier must do. The target (CONTRACT §2) is a median
under 1 µs for every error that carries a code; the closing summary prints each median and
its ratio to the floor.

Only COMMIT_UNKNOWN is not provoked: no server here can produce 40003 or 08007, so its
exception is built from psycopg's real class (``psycopg.errors.lookup("40003")``) and
wrapped with ``DBAPIError.instance``, which is what SQLAlchemy's engine calls.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg.errors
import pytest
import sqlalchemy as sa
from conftest import CLASSIFY_MEDIANS
from sqlalchemy.engine import make_url

from tests import provoke as p
from txpolicy import ErrorCategory, TransactionError, classify_error
from txpolicy._errors import _mysql, _postgres, _sqlite

C = ErrorCategory
POSTGRES_URL = os.environ.get(
    "TXPOLICY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("TXPOLICY_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")

# (dialect, category, provoker, options, raw stack, wrapped stack)
CASES: list[tuple[str, ErrorCategory, str, dict[str, Any], str, str]] = [
    ("postgresql", C.DEADLOCK, "provoke_pg_deadlock", {}, "psycopg", "sa-psycopg"),
    ("postgresql", C.SERIALIZATION, "provoke_pg_serialization", {}, "psycopg", "sa-psycopg"),
    ("postgresql", C.LOCK_TIMEOUT, "provoke_pg_lock_not_available", {}, "psycopg", "sa-psycopg"),
    ("postgresql", C.CONNECTION, "provoke_pg_terminated", {}, "psycopg", "sa-psycopg"),
    ("postgresql", C.READ_ONLY, "provoke_pg_read_only", {}, "psycopg", "sa-psycopg"),
    ("postgresql", C.RESOURCE, "provoke_pg_too_many_connections", {}, "asyncpg", "sa-asyncpg"),
    ("postgresql", C.STATEMENT_TIMEOUT, "provoke_pg_statement_timeout", {}, "psycopg",
     "sa-psycopg"),
    ("postgresql", C.COMMIT_UNKNOWN, "", {}, "psycopg", "sa-psycopg"),
    ("postgresql", C.INTEGRITY, "provoke_pg_unique", {}, "psycopg", "sa-psycopg"),
    ("postgresql", C.DATA, "provoke_pg_data", {"kind": "division_by_zero"}, "psycopg",
     "sa-psycopg"),
    ("postgresql", C.PERMISSION, "provoke_pg_permission", {}, "psycopg", "sa-psycopg"),
    ("postgresql", C.SCHEMA, "provoke_pg_schema", {}, "psycopg", "sa-psycopg"),
    ("postgresql", C.UNKNOWN, "provoke_pg_in_failed_transaction", {}, "psycopg", "sa-psycopg"),
    ("postgresql-asyncpg", C.DEADLOCK, "provoke_pg_deadlock", {}, "asyncpg", "sa-asyncpg"),
    ("mysql", C.LOCK_TIMEOUT, "provoke_mysql_lock_wait_timeout", {"nowait": True}, "pymysql",
     "sa-pymysql"),
    ("mysql", C.SERIALIZATION, "provoke_mysql_record_changed", {}, "pymysql", "sa-pymysql"),
    ("mysql", C.CONNECTION, "provoke_mysql_killed", {}, "pymysql", "sa-pymysql"),
    ("mysql", C.READ_ONLY, "provoke_mysql_read_only", {}, "pymysql", "sa-pymysql"),
    ("mysql", C.RESOURCE, "provoke_mysql_too_many_connections", {}, "pymysql", "sa-pymysql"),
    ("mysql", C.STATEMENT_TIMEOUT, "provoke_mysql_statement_timeout", {}, "pymysql",
     "sa-pymysql"),
    ("mysql", C.INTEGRITY, "provoke_mysql_check", {}, "pymysql", "sa-pymysql"),
    ("mysql", C.DATA, "provoke_mysql_data", {}, "pymysql", "sa-pymysql"),
    ("mysql", C.PERMISSION, "provoke_mysql_permission", {}, "pymysql", "sa-pymysql"),
    ("mysql", C.SCHEMA, "provoke_mysql_schema", {}, "pymysql", "sa-pymysql"),
    ("sqlite", C.LOCK_TIMEOUT, "provoke_sqlite_locked", {}, "sqlite3", "sa-sqlite"),
    ("sqlite", C.SERIALIZATION, "provoke_sqlite_busy_snapshot", {}, "sqlite3", "sa-sqlite"),
    ("sqlite", C.READ_ONLY, "provoke_sqlite_read_only", {}, "sqlite3", "sa-sqlite"),
    ("sqlite", C.INTEGRITY, "provoke_sqlite_constraint", {}, "sqlite3", "sa-sqlite"),
    ("sqlite", C.SCHEMA, "provoke_sqlite_schema", {}, "sqlite3", "sa-sqlite"),
]  # fmt: skip

FLOORS = {
    # What the least a classifier does costs: read the code, look it up once.
    "postgresql": ("provoke_pg_deadlock", "psycopg", lambda e: _FLOOR_PG.get(e.sqlstate)),
    "postgresql-asyncpg": ("provoke_pg_deadlock", "asyncpg", lambda e: _FLOOR_PG.get(e.sqlstate)),
    "mysql": ("provoke_mysql_lock_wait_timeout", "pymysql", lambda e: _FLOOR_MY.get(e.args[0])),
    "sqlite": ("provoke_sqlite_locked", "sqlite3", lambda e: _FLOOR_LITE.get(e.sqlite_errorcode)),
}
_FLOOR_PG = dict(_postgres.SQLSTATES)
_FLOOR_MY = dict(_mysql.ERRNOS)
_FLOOR_LITE = dict(_sqlite.CODES)


def _server_url(dialect: str, workdir: str) -> str:
    if dialect.startswith("postgresql"):
        return POSTGRES_URL
    if dialect == "mysql":
        return MYSQL_URL
    return f"sqlite:///{workdir}/bench.db"


class Provoked:
    """Real errors, provoked on first use and kept for the module."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.errors: dict[tuple[str, str, str], BaseException] = {}

    def get(self, dialect: str, provoker: str, stack: str, options: dict[str, Any]) -> Any:
        key = (dialect, provoker, stack)
        if key not in self.errors:
            self.errors[key] = self._provoke(dialect, provoker, stack, options)
        return self.errors[key]

    def _provoke(self, dialect: str, provoker: str, stack: str, options: dict[str, Any]) -> Any:
        if not provoker:  # COMMIT_UNKNOWN: no server here produces 40003
            raw = psycopg.errors.lookup("40003")("statement completion unknown")
            if stack.startswith("sa-"):
                return sa.exc.DBAPIError.instance("COMMIT", {}, raw, psycopg.Error)
            return raw
        url = _server_url(dialect, self.workdir)
        if not url.startswith("sqlite"):
            _require(url)
        else:
            db = make_url(url).database
            if db and os.path.exists(db):
                os.remove(db)
        return p.STACKS[stack].provoke(p.PROVOKERS[provoker], url, **options)


def _require(url: str) -> None:
    """Skip when the server does not answer (the benchmarks never gate anything)."""
    import socket

    parsed = make_url(url)
    try:
        with socket.create_connection((parsed.host, parsed.port or 5432), timeout=3):
            pass
    except OSError as exc:
        pytest.skip(f"{parsed.get_backend_name()} server unreachable: {exc}")


@pytest.fixture(scope="module")
def provoked() -> Iterator[Provoked]:
    """The module's cache of provoked errors."""
    with tempfile.TemporaryDirectory() as workdir:
        yield Provoked(workdir)


def _record(benchmark: Any, dialect: str, label: str) -> None:
    CLASSIFY_MEDIANS.setdefault(dialect, {})[label] = benchmark.stats.stats.median


@pytest.mark.parametrize("dialect", list(FLOORS))
def test_floor(benchmark: Any, provoked: Provoked, dialect: str) -> None:
    """The floor: the code attribute plus one dict lookup, on the real raw error."""
    provoker, stack, floor = FLOORS[dialect]
    options = {"nowait": True} if provoker == "provoke_mysql_lock_wait_timeout" else {}
    error = provoked.get(dialect, provoker, stack, options)
    benchmark.group = dialect

    assert floor(error) is not None
    benchmark(floor, error)
    _record(benchmark, dialect, "floor")


def _case_id(case: tuple[str, ErrorCategory, str, dict[str, Any], str, str]) -> str:
    return f"{case[0]}-{case[1].value}"


@pytest.mark.parametrize("wrapped", [False, True], ids=["raw", "wrapped"])
@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_classify(
    benchmark: Any,
    provoked: Provoked,
    case: tuple[str, ErrorCategory, str, dict[str, Any], str, str],
    wrapped: bool,
) -> None:
    """``classify_error`` on a real error of one category, as the driver or SQLAlchemy raised it."""
    dialect, category, provoker, options, raw_stack, sa_stack = case
    error = provoked.get(dialect, provoker, sa_stack if wrapped else raw_stack, options)
    benchmark.group = dialect

    classified = benchmark(classify_error, error)

    assert isinstance(classified, TransactionError), repr(error)
    assert category == classified.category
    assert isinstance(error, sa.exc.DBAPIError) is wrapped
    coded = classified.sqlstate is not None or classified.vendor_code is not None
    assert coded, f"{classified!r} carries no code: not the coded path"
    _record(benchmark, dialect, f"classify {category.value} {'wrapped' if wrapped else 'raw'}")
