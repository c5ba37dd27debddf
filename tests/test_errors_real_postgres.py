"""
Real PostgreSQL errors, provoked on the server and classified (CONTRACT §2, issue 2).

Every case runs on six stacks: psycopg 3 sync and async, asyncpg, and the same three under
SQLAlchemy (``postgresql+psycopg`` sync and ``create_async_engine``, ``postgresql+asyncpg``).
Each test first asserts what the driver raised (class, SQLSTATE, message), then what
``classify_error`` and ``is_retryable_error`` make of it.
"""

from __future__ import annotations

import asyncpg
import psycopg
import pytest
from asyncpg.exceptions._base import PostgresMessageMeta

from tests import provoke as p
from tests.real_error_cases import Case, Shape, check_all, params
from txpolicy import ErrorCategory as C

pytestmark = pytest.mark.postgres


def pg(sqlstate: str, message: str | None = None, **by_stack_or_driver: Shape) -> dict[str, Shape]:
    """The shape psycopg and asyncpg give a server error: their class for *sqlstate*."""
    shapes = {
        "psycopg": Shape(psycopg.errors.lookup(sqlstate), sqlstate, message=message),
        "asyncpg": Shape(
            PostgresMessageMeta.get_message_class_for_sqlstate(sqlstate), sqlstate, message=message
        ),
    }
    shapes.update(by_stack_or_driver)
    return shapes


# asyncpg reads a FATAL error that arrives while the connection is idle, closes the connection
# and forgets the error: the next call only says "connection is closed" (no SQLSTATE).
ASYNCPG_CLOSED = Shape(asyncpg.InterfaceError, None, message="connection is closed")
RAW = ("psycopg", "psycopg-async", "asyncpg")

CASES = [
    Case("deadlock", p.provoke_pg_deadlock, C.DEADLOCK, pg("40P01", "deadlock detected")),
    Case(
        "serialization",
        p.provoke_pg_serialization,
        C.SERIALIZATION,
        pg("40001", "concurrent update"),
    ),
    Case(
        "nowait", p.provoke_pg_lock_not_available, C.LOCK_TIMEOUT, pg("55P03", "could not obtain")
    ),
    Case(
        "lock-timeout",
        p.provoke_pg_lock_not_available,
        C.LOCK_TIMEOUT,
        pg("55P03", "due to lock timeout"),
        {"nowait": False},
    ),
    Case(
        "statement-timeout",
        p.provoke_pg_statement_timeout,
        C.STATEMENT_TIMEOUT,
        pg("57014", "due to statement timeout"),
    ),
    Case("cancel", p.provoke_pg_cancel, C.STATEMENT_TIMEOUT, pg("57014", "due to user request")),
    Case(
        "terminated-idle",
        p.provoke_pg_terminated,
        C.CONNECTION,
        pg("57P01", "administrator command", asyncpg=ASYNCPG_CLOSED),
    ),
    Case(
        "terminated-mid-statement",
        p.provoke_pg_terminated,
        C.CONNECTION,
        pg(
            "57P01",
            "administrator command",
            asyncpg=Shape(
                asyncpg.exceptions.ConnectionDoesNotExistError,
                "08003",
                message="administrator command",
                chained=True,
            ),
        ),
        {"during": "statement"},
    ),
    Case(
        "reused-after-termination",
        p.provoke_pg_terminated,
        C.CONNECTION,
        {
            "psycopg": Shape(psycopg.OperationalError, None, message="the connection is closed"),
            "asyncpg": ASYNCPG_CLOSED,
        },
        {"during": "reuse"},
        stacks=RAW,
        why_not_elsewhere="SQLAlchemy refuses to reuse an invalidated connection itself",
    ),
    Case(
        "too-many-connections",
        p.provoke_pg_too_many_connections,
        C.RESOURCE,
        {
            # libpq reports a FATAL at connect time as text only.
            "psycopg": Shape(
                psycopg.OperationalError,
                None,
                message="too many connections for role",
                message_code="53300",
            ),
            "asyncpg": Shape(asyncpg.exceptions.TooManyConnectionsError, "53300"),
        },
    ),
    Case("read-only", p.provoke_pg_read_only, C.READ_ONLY, pg("25006", "read-only transaction")),
    Case("unique", p.provoke_pg_unique, C.INTEGRITY, pg("23505")),
    Case("foreign-key", p.provoke_pg_foreign_key, C.INTEGRITY, pg("23503")),
    Case("not-null", p.provoke_pg_not_null, C.INTEGRITY, pg("23502")),
    Case("check", p.provoke_pg_check, C.INTEGRITY, pg("23514")),
    Case("invalid-text", p.provoke_pg_data, C.DATA, pg("22P02")),
    Case("division-by-zero", p.provoke_pg_data, C.DATA, pg("22012"), {"kind": "division_by_zero"}),
    Case("string-too-long", p.provoke_pg_data, C.DATA, pg("22001"), {"kind": "too_long"}),
    Case("permission", p.provoke_pg_permission, C.PERMISSION, pg("42501", "permission denied")),
    Case("undefined-table", p.provoke_pg_schema, C.SCHEMA, pg("42P01")),
    Case(
        "undefined-column",
        p.provoke_pg_schema,
        C.SCHEMA,
        pg("42703"),
        {"kind": "undefined_column"},
    ),
    Case("syntax", p.provoke_pg_schema, C.SCHEMA, pg("42601"), {"kind": "syntax"}),
    Case(
        "in-failed-transaction",
        p.provoke_pg_in_failed_transaction,
        C.UNKNOWN,
        pg("25P02", "current transaction is aborted"),
    ),
    Case(
        "idle-in-transaction-timeout",
        p.provoke_pg_idle_in_transaction_timeout,
        C.CONNECTION,
        pg("25P03", "idle-in-transaction timeout", asyncpg=ASYNCPG_CLOSED),
    ),
]

AT_COMMIT = [
    Case(
        "serialization-at-commit",
        p.provoke_pg_serialization,
        C.SERIALIZATION,
        pg("40001", "read/write dependencies"),
        {"at_commit": True},
    ),
    Case(
        "terminated-at-commit",
        p.provoke_pg_terminated,
        C.CONNECTION,
        pg("57P01", "administrator command", asyncpg=ASYNCPG_CLOSED),
        {"during": "commit"},
    ),
    Case(
        "idle-in-transaction-timeout-at-commit",
        p.provoke_pg_idle_in_transaction_timeout,
        C.CONNECTION,
        pg("25P03", "idle-in-transaction timeout", asyncpg=ASYNCPG_CLOSED),
        {"at_commit": True},
    ),
]


@pytest.mark.parametrize(("stack", "case"), params(CASES, "postgresql"))
def test_real_error_is_classified(postgres_url: str, stack: p.Stack, case: Case) -> None:
    """A real PostgreSQL error lands in its contract category, raw and through SQLAlchemy."""
    error = case.provoke(stack, postgres_url)

    check_all(case, stack, error)


@pytest.mark.parametrize(("stack", "case"), params(AT_COMMIT, "postgresql"))
def test_error_raised_by_commit(postgres_url: str, stack: p.Stack, case: Case) -> None:
    """
    Errors that COMMIT itself raised keep their category; only connection losses turn unknown.

    40001 under SERIALIZABLE, and 25P03 (the server ended the idle transaction and answers
    COMMIT with the FATAL error) are definite rollbacks, retried even with
    ``during_commit=True`` (CONTRACT §4). A connection terminated before COMMIT's reply is an
    unknown outcome: retried only when idempotent. With asyncpg the server's word (25P03) is
    lost before COMMIT is even sent, so all it reports is a closed connection: unknown too.
    """
    error = case.provoke(stack, postgres_url)

    check_all(case, stack, error)
