"""
Real MariaDB errors, provoked on the server and classified (CONTRACT §2, issue 2).

Every case runs raw through PyMySQL and through SQLAlchemy (``mysql+pymysql``). Each test
first asserts what PyMySQL raised (class, errno, SQLSTATE, message), then what
``classify_error`` and ``is_retryable_error`` make of it.

Not provoked here, because this server cannot produce them without changing a global setting
or restarting: 1290 / 1836 (server ``read_only`` / read-only mode), 1040 (global
``max_connections``), 1053 (shutdown), 4031 (MySQL 8 only), 3572 and 3024 (MySQL 8 only;
MariaDB reports NOWAIT as 1205, as the ``nowait`` case shows).
"""

from __future__ import annotations

import pymysql
import pytest
import sqlalchemy as sa

from tests import provoke as p
from tests.fix_db import REQUIRE_DATABASES
from tests.real_error_cases import Case, Shape, check_all, params
from txpolicy import ErrorCategory as C

pytestmark = pytest.mark.mysql

Operational = pymysql.err.OperationalError
Integrity = pymysql.err.IntegrityError
Data = pymysql.err.DataError
Programming = pymysql.err.ProgrammingError


def my(
    cls: type[BaseException], errno: int, sqlstate: str | None, message: str | None = None
) -> dict[str, Shape]:
    """PyMySQL's shape of a server (or client) error: its class, errno and SQLSTATE."""
    return {"*": Shape(cls, errno, sqlstate, message=message)}


LOST = my(Operational, 2013, None, "Lost connection")

CASES = [
    Case("deadlock", p.provoke_mysql_deadlock, C.DEADLOCK, my(Operational, 1213, "40001")),
    Case(
        "lock-wait-timeout",
        p.provoke_mysql_lock_wait_timeout,
        C.LOCK_TIMEOUT,
        my(Operational, 1205, "HY000", "Lock wait timeout"),
    ),
    Case(
        "nowait",
        p.provoke_mysql_lock_wait_timeout,
        C.LOCK_TIMEOUT,
        my(Operational, 1205, "HY000"),
        {"nowait": True},
    ),
    Case(
        "max-statement-time",
        p.provoke_mysql_statement_timeout,
        C.STATEMENT_TIMEOUT,
        my(Operational, 1969, "70100", "max_statement_time"),
    ),
    Case(
        "query-killed",
        p.provoke_mysql_query_killed,
        C.STATEMENT_TIMEOUT,
        my(Operational, 1317, "70100"),
    ),
    Case("killed-idle", p.provoke_mysql_killed, C.CONNECTION, LOST),
    Case(
        "killed-mid-statement", p.provoke_mysql_killed, C.CONNECTION, LOST, {"during": "statement"}
    ),
    Case(
        "connection-killed",
        p.provoke_mysql_killed,
        C.CONNECTION,
        my(Operational, 1927, "70100", "Connection was killed"),
        {"during": "self"},
    ),
    Case(
        "too-many-user-connections",
        p.provoke_mysql_too_many_connections,
        C.RESOURCE,
        my(Operational, 1226, "42000", "max_user_connections"),
    ),
    Case("read-only", p.provoke_mysql_read_only, C.READ_ONLY, my(Operational, 1792, "25006")),
    Case("unique", p.provoke_mysql_unique, C.INTEGRITY, my(Integrity, 1062, "23000")),
    Case("foreign-key", p.provoke_mysql_foreign_key, C.INTEGRITY, my(Integrity, 1452, "23000")),
    Case("not-null", p.provoke_mysql_not_null, C.INTEGRITY, my(Integrity, 1048, "23000")),
    # PyMySQL files MariaDB's 4025 as OperationalError; the contract says INTEGRITY.
    Case("check", p.provoke_mysql_check, C.INTEGRITY, my(Operational, 4025, "23000")),
    Case("data-too-long", p.provoke_mysql_data, C.DATA, my(Data, 1406, "22001")),
    Case(
        "out-of-range",
        p.provoke_mysql_data,
        C.DATA,
        my(Data, 1264, "22003"),
        {"kind": "out_of_range"},
    ),
    Case(
        "incorrect-value",
        p.provoke_mysql_data,
        C.DATA,
        my(Data, 1366, "22007"),
        {"kind": "incorrect_value"},
    ),
    Case("no-such-table", p.provoke_mysql_schema, C.SCHEMA, my(Programming, 1146, "42S02")),
    Case(
        "bad-field",
        p.provoke_mysql_schema,
        C.SCHEMA,
        my(Operational, 1054, "42S22"),
        {"kind": "bad_field"},
    ),
    Case(
        "parse", p.provoke_mysql_schema, C.SCHEMA, my(Programming, 1064, "42000"), {"kind": "parse"}
    ),
    Case(
        "permission",
        p.provoke_mysql_permission,
        C.PERMISSION,
        my(Operational, 1142, "42000", "command denied"),
    ),
]

KILLED_AT_COMMIT = Case(
    "killed-at-commit", p.provoke_mysql_killed, C.CONNECTION, LOST, {"during": "commit"}
)
RECORD_CHANGED = Case(
    "record-changed",
    p.provoke_mysql_record_changed,
    C.SERIALIZATION,
    my(Operational, 1020, "HY000", "Record has changed since last read"),
)


@pytest.fixture(scope="module")
def snapshot_isolation(mysql_url: str) -> None:
    """MariaDB 1020 needs ``innodb_snapshot_isolation`` (10.6.18+, 10.11.8+, 11.x)."""
    engine = sa.create_engine(mysql_url)
    try:
        with engine.connect() as conn:
            found = conn.exec_driver_sql("SHOW VARIABLES LIKE 'innodb_snapshot_isolation'").all()
    finally:
        engine.dispose()
    if not found:
        reason = "this server has no innodb_snapshot_isolation, so it cannot raise 1020"
        if REQUIRE_DATABASES:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


@pytest.mark.parametrize(("stack", "case"), params(CASES, "mysql"))
def test_real_error_is_classified(mysql_url: str, stack: p.Stack, case: Case) -> None:
    """A real MariaDB error lands in its contract category, raw and through SQLAlchemy."""
    error = case.provoke(stack, mysql_url)

    check_all(case, stack, error)


@pytest.mark.parametrize(("stack", "case"), params([RECORD_CHANGED], "mysql"))
def test_record_changed_is_serialization(
    mysql_url: str, snapshot_isolation: None, stack: p.Stack, case: Case
) -> None:
    """MariaDB 1020 under ``innodb_snapshot_isolation`` is a serialization failure."""
    error = case.provoke(stack, mysql_url)

    check_all(case, stack, error)


@pytest.mark.parametrize(("stack", "case"), params([KILLED_AT_COMMIT], "mysql"))
def test_connection_lost_at_commit_is_unknown(mysql_url: str, stack: p.Stack, case: Case) -> None:
    """
    A connection KILLed before COMMIT's reply has an unknown outcome (CONTRACT §2, §4).

    PyMySQL reports 2013 in reply to COMMIT: retried only when the call is idempotent.
    """
    error = case.provoke(stack, mysql_url)

    check_all(case, stack, error)
