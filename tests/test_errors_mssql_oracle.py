"""
SQL Server (pyodbc, pymssql) and Oracle (python-oracledb, cx_Oracle) classification.

No server for either runs here and the drivers are not installed, so the exceptions are built
exactly the way the drivers build them (``tests/driver_standins.py`` cites the source mirrored).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests import driver_standins as ds
from txpolicy import (
    CommitUnknownError,
    ConnectionError,
    DeadlockError,
    ErrorCategory,
    LockTimeoutError,
    classify_error,
    is_retryable_error,
)
from txpolicy._exceptions import CATEGORY_CLASSES

C = ErrorCategory
D = ds.MSSQL_DRIVER


def test_standins_look_like_the_drivers() -> None:
    """The stand-ins carry the real drivers' module and class names (what detection reads)."""
    error = ds.pyodbc_error("40001", D + "deadlocked", 1205)
    oracle = ds.oracle_error(60, "deadlock detected while waiting for resource")

    assert ("pyodbc", "Error") == (type(error).__module__, type(error).__name__)
    assert ("oracledb.exceptions", "DatabaseError") == (
        type(oracle).__module__,
        type(oracle).__name__,
    )
    assert "ORA-00060" == oracle.args[0].full_code


PYODBC_CASES = [
    pytest.param(
        "40001",
        D + "Transaction (Process ID 52) was deadlocked on lock resources with another process "
        "and has been chosen as the deadlock victim. Rerun the transaction.",
        1205,
        C.DEADLOCK,
        id="1205-deadlock",
    ),
    pytest.param(
        "HY000",
        D + "Lock request time out period exceeded.",
        1222,
        C.LOCK_TIMEOUT,
        id="1222-lock-timeout",
    ),
    pytest.param(
        "HY000",
        D + "Snapshot isolation transaction aborted due to update conflict.",
        3960,
        C.SERIALIZATION,
        id="3960-snapshot-conflict",
    ),
    pytest.param(
        "23000",
        D + "Violation of PRIMARY KEY constraint 'PK_t'. Cannot insert duplicate key in object "
        "'dbo.t'. The duplicate key value is (1).",
        2627,
        C.INTEGRITY,
        id="2627-unique",
    ),
    pytest.param(
        "23000",
        D + "The INSERT statement conflicted with the FOREIGN KEY constraint \"FK_c\".",
        547,
        C.INTEGRITY,
        id="547-foreign-key",
    ),
    pytest.param(
        "42S02", D + "Invalid object name 'nope'.", 208, C.SCHEMA, id="208-invalid-object"
    ),
    pytest.param(
        "42000",
        D + "The SELECT permission was denied on the object 't', database 'db', schema 'dbo'.",
        229,
        C.PERMISSION,
        id="229-permission",
    ),
    pytest.param(
        "22003",
        D + "Arithmetic overflow error converting expression to data type int.",
        8115,
        C.DATA,
        id="8115-overflow",
    ),
    pytest.param(
        "08S01",
        "[Microsoft][ODBC Driver 18 for SQL Server]TCP Provider: An existing connection was "
        "forcibly closed by the remote host.",
        10054,
        C.CONNECTION,
        id="10054-connection-reset",
    ),
    pytest.param(
        "08S01",
        "[Microsoft][ODBC Driver 18 for SQL Server]Communication link failure",
        0,
        C.CONNECTION,
        id="08S01-communication-link",
    ),
    pytest.param(
        "HYT00", "[Microsoft][ODBC Driver 18 for SQL Server]Query timeout expired", 0,
        C.STATEMENT_TIMEOUT, id="HYT00-query-timeout",
    ),  # fmt: skip
    pytest.param(
        "HYT01",
        "[Microsoft][ODBC Driver 18 for SQL Server]Login timeout expired",
        0,
        C.CONNECTION,
        id="HYT01-login-timeout",
    ),
    pytest.param(
        "40001",
        D + "Transaction was aborted (snapshot).",
        0,
        C.SERIALIZATION,
        id="40001-without-number",
    ),
    pytest.param(
        "08007",
        "[Microsoft][ODBC Driver 18 for SQL Server]Connection failure during transaction",
        0,
        C.COMMIT_UNKNOWN,
        id="08007-commit-unknown",
    ),
    pytest.param(
        "42000",
        D + "Database 'db' cannot be opened because it is read-only... (oops) failed to update",
        3906,
        C.READ_ONLY,
        id="3906-read-only",
    ),
    pytest.param(
        "HY000", D + "There is insufficient system memory to run this query.", 701,
        C.RESOURCE, id="701-memory",
    ),  # fmt: skip
    pytest.param(
        "HY000", D + "Something unheard of.", 50000, C.UNKNOWN, id="unknown-number"
    ),
]


@pytest.mark.parametrize(("sqlstate", "text", "native", "category"), PYODBC_CASES)
def test_pyodbc(sqlstate: str, text: str, native: int, category: ErrorCategory) -> None:
    """pyodbc: the native number in the message decides first, then the ODBC SQLSTATE."""
    error = ds.pyodbc_error(sqlstate, text, native)

    classified = classify_error(error)

    assert CATEGORY_CLASSES[category] is type(classified)
    assert category == classified.category
    assert "mssql" == classified.dialect
    assert sqlstate == classified.sqlstate
    assert (native or None) == classified.vendor_code
    assert error is classified.original
    assert error.args[1] == str(classified)


def test_pyodbc_under_sqlalchemy() -> None:
    """SQLAlchemy wraps pyodbc's base ``Error`` (a deadlock) as ``DBAPIError``; still a deadlock."""
    error = ds.pyodbc_error("40001", D + "... chosen as the deadlock victim.", 1205)
    wrapped = sa.exc.DBAPIError.instance("UPDATE t SET v = 1", {}, error, ds.PyodbcError)

    classified = classify_error(wrapped)

    assert sa.exc.DBAPIError is type(wrapped)
    assert DeadlockError is type(classified)
    assert error is classified.original
    assert True is is_retryable_error(wrapped)


def test_pyodbc_several_records() -> None:
    """The first diagnostic record that names a known number decides (records join with ';')."""
    error = ds.pyodbc_error(
        "23000",
        D + "Violation of UNIQUE KEY constraint 'uq'. The duplicate key value is (20).",
        2627,
        ("01000", D + "The statement has been terminated.", 3621),
    )

    classified = classify_error(error)

    assert C.INTEGRITY == classified.category
    assert 2627 == classified.vendor_code


def test_pyodbc_number_quoted_in_text_is_not_native() -> None:
    """A value in parentheses inside the text is not mistaken for the native number."""
    error = ds.pyodbc_error(
        "23000", D + "The duplicate key value is (1205). Cannot insert.", 2627
    )

    assert C.INTEGRITY == classify_error(error).category


def test_pyodbc_own_error_closed_connection() -> None:
    """pyodbc's own errors put the message first; a closed connection is a connection error."""
    error = ds.pyodbc_own_error(ds.PyodbcProgrammingError, "Attempt to use a closed connection.")

    classified = classify_error(error)

    assert ConnectionError is type(classified)
    assert "HY000" == classified.sqlstate
    assert "Attempt to use a closed connection." == str(classified)


def test_pyodbc_connection_lost_during_commit() -> None:
    """A communication failure raised by COMMIT is an unknown outcome."""
    error = ds.pyodbc_error(
        "08S01", "[Microsoft][ODBC Driver 18 for SQL Server]Communication link failure", 0,
        function="SQLEndTran",
    )  # fmt: skip

    assert False is is_retryable_error(error, during_commit=True)
    assert True is is_retryable_error(error, during_commit=True, idempotent=True)
    assert True is is_retryable_error(error)


class PymssqlOperationalError(Exception):
    """pymssql ``OperationalError`` (``pymssql.exceptions``): ``args == (number, bytes)``."""


PymssqlOperationalError.__module__ = "pymssql.exceptions"
PymssqlOperationalError.__name__ = PymssqlOperationalError.__qualname__ = "OperationalError"


@pytest.mark.parametrize(
    ("number", "message", "category"),
    [
        pytest.param(
            1205,
            b"Transaction (Process ID 54) was deadlocked on lock resources with another "
            b"process and has been chosen as the deadlock victim. Rerun the transaction."
            b"DB-Lib error message 20018, severity 13:\nGeneral SQL Server error: Check "
            b"messages from the SQL Server\n",
            C.DEADLOCK,
            id="1205",
        ),
        pytest.param(
            20047, b"DBPROCESS is dead or not enabled", C.CONNECTION, id="20047-dbprocess-dead"
        ),
        pytest.param(
            20009,
            b"DB-Lib error message 20009, severity 9:\nUnable to connect: Adaptive Server is "
            b"unavailable or does not exist (127.0.0.1)\n",
            C.CONNECTION,
            id="20009-unable-to-connect",
        ),
        pytest.param(1222, b"Lock request time out period exceeded.", C.LOCK_TIMEOUT, id="1222"),
    ],
)
def test_pymssql(number: int, message: bytes, category: ErrorCategory) -> None:
    """pymssql: the SQL Server number in ``args[0]``, the message as bytes in ``args[1]``."""
    error = PymssqlOperationalError(number, message)

    classified = classify_error(error)

    assert category == classified.category
    assert number == classified.vendor_code
    assert "mssql" == classified.dialect
    assert message.decode() == str(classified)


ORACLE_CASES = [
    pytest.param(60, "deadlock detected while waiting for resource", C.DEADLOCK, id="00060"),
    pytest.param(8177, "can't serialize access for this transaction", C.SERIALIZATION, id="08177"),
    pytest.param(
        54, "resource busy and acquire with NOWAIT specified or timeout expired",
        C.LOCK_TIMEOUT, id="00054",
    ),  # fmt: skip
    pytest.param(
        30006, "resource busy; acquire with WAIT timeout expired", C.LOCK_TIMEOUT, id="30006"
    ),
    pytest.param(1013, "user requested cancel of current operation", C.STATEMENT_TIMEOUT,
                 id="01013"),  # fmt: skip
    pytest.param(3113, "end-of-file on communication channel", C.CONNECTION, id="03113"),
    pytest.param(3135, "connection lost contact", C.CONNECTION, id="03135"),
    pytest.param(1033, "ORACLE initialization or shutdown in progress", C.CONNECTION,
                 id="01033"),  # fmt: skip
    pytest.param(12514, "Service x is not registered with the listener", C.CONNECTION,
                 id="12514"),  # fmt: skip
    pytest.param(1, "unique constraint (U.PK) violated", C.INTEGRITY, id="00001"),
    pytest.param(2291, "integrity constraint (U.FK) violated - parent key not found",
                 C.INTEGRITY, id="02291"),  # fmt: skip
    pytest.param(1438, "value larger than specified precision", C.DATA, id="01438"),
    pytest.param(12899, 'value too large for column "T"."V"', C.DATA, id="12899"),
    pytest.param(942, "table or view does not exist", C.SCHEMA, id="00942"),
    pytest.param(1031, "insufficient privileges", C.PERMISSION, id="01031"),
    pytest.param(16000, "database open for read-only access", C.READ_ONLY, id="16000"),
    pytest.param(4031, "unable to allocate 4096 bytes of shared memory", C.RESOURCE, id="04031"),
    pytest.param(20001, "application error raised by a trigger", C.UNKNOWN, id="20001"),
]


@pytest.mark.parametrize(("code", "text", "category"), ORACLE_CASES)
def test_oracledb(code: int, text: str, category: ErrorCategory) -> None:
    """python-oracledb: ``args[0]`` is an ``_Error``; the ORA number decides."""
    error = ds.oracle_error(code, text)

    classified = classify_error(error)

    assert CATEGORY_CLASSES[category] is type(classified)
    assert "oracle" == classified.dialect
    assert code == classified.vendor_code
    assert None is classified.sqlstate
    assert error is classified.original
    assert error.args[0].message == str(classified)


def test_oracledb_deadlock_is_plain_database_error() -> None:
    """ORA-00060 arrives as a plain DatabaseError (no DB-API class says deadlock); still found."""
    error = ds.oracle_error(60, "deadlock detected while waiting for resource")

    assert "DatabaseError" == type(error).__name__
    assert DeadlockError is type(classify_error(error))


@pytest.mark.parametrize(
    ("number", "text", "category"),
    [
        pytest.param(4011, "the database or network closed the connection", C.CONNECTION,
                     id="DPY-4011"),  # fmt: skip
        pytest.param(1001, "not connected to database", C.CONNECTION, id="DPY-1001"),
        pytest.param(4024, "call timeout of 100 ms exceeded", C.STATEMENT_TIMEOUT, id="DPY-4024"),
        pytest.param(4005, "timed out waiting for the connection pool to return a connection",
                     C.RESOURCE, id="DPY-4005"),  # fmt: skip
        pytest.param(2001, "no statement specified and no prior statement prepared", C.SCHEMA,
                     id="DPY-2001"),  # fmt: skip
    ],
)
def test_oracledb_driver_errors(number: int, text: str, category: ErrorCategory) -> None:
    """python-oracledb's own errors carry ``code == 0`` and a ``DPY-`` ``full_code``."""
    error = ds.oracle_driver_error(number, text)

    classified = classify_error(error)

    assert category == classified.category
    assert f"DPY-{number:04}" == classified.vendor_code


def test_oracledb_recoverable_without_known_code() -> None:
    """An error python-oracledb marks ``isrecoverable`` but the table does not know: connection."""
    info = ds.OracleErrorInfo("ORA-00376: file 5 cannot be read at this time", code=376)
    error = info.exc_type(info)

    classified = classify_error(error)

    assert True is info.isrecoverable
    assert C.CONNECTION == classified.category


def test_oracledb_connection_closed_keeps_ora_code() -> None:
    """ORA-03113 becomes DPY-4011 in ``full_code`` but keeps ``code``: both say connection."""
    error = ds.oracle_error(3113, "end-of-file on communication channel")

    classified = classify_error(error)

    assert "DPY-4011" == error.args[0].full_code
    assert ConnectionError is type(classified)
    assert False is is_retryable_error(error, during_commit=True)


def test_oracledb_idle_time_exceeded_at_commit_is_a_rollback() -> None:
    """ORA-02396 (idle time exceeded) at COMMIT: the server ended the session before it."""
    error = ds.oracle_error(2396, "exceeded maximum idle time, please connect again")

    assert True is is_retryable_error(error, during_commit=True)


def test_oracledb_under_sqlalchemy() -> None:
    """SQLAlchemy wraps python-oracledb's DatabaseError; the ORA code still decides."""
    error = ds.oracle_error(54, "resource busy and acquire with NOWAIT specified")
    wrapped = sa.exc.DBAPIError.instance("SELECT 1 FROM t FOR UPDATE NOWAIT", {}, error,
                                         ds.OracleError)  # fmt: skip

    classified = classify_error(wrapped)

    assert isinstance(wrapped, sa.exc.DatabaseError)
    assert LockTimeoutError is type(classified)
    assert error is classified.original


@pytest.mark.parametrize(
    ("message", "code", "category"),
    [
        pytest.param("ORA-00060: deadlock detected while waiting for resource", 60, C.DEADLOCK,
                     id="00060"),  # fmt: skip
        pytest.param("ORA-03135: connection lost contact", 3135, C.CONNECTION, id="03135"),
        pytest.param("ORA-08177: can't serialize access for this transaction", 8177,
                     C.SERIALIZATION, id="08177"),  # fmt: skip
    ],
)
def test_cx_oracle(message: str, code: int, category: ErrorCategory) -> None:
    """cx_Oracle's ``_Error`` has no ``full_code``; ``code`` is enough."""
    error = ds.CxOracleDatabaseError(ds.CxOracleErrorInfo(message, code))

    classified = classify_error(error)

    assert category == classified.category
    assert code == classified.vendor_code
    assert "oracle" == classified.dialect


def test_oracle_message_only() -> None:
    """An Oracle error whose ``args[0]`` is plain text: the ORA code is read from it."""
    error = ds.CxOracleDatabaseError("ORA-00060: deadlock detected while waiting for resource")

    assert DeadlockError is type(classify_error(error))


def test_oracle_commit_unknown_is_not_retried() -> None:
    """A connection lost while committing to Oracle is an unknown outcome, raw and wrapped."""
    error = ds.oracle_error(3135, "connection lost contact")
    wrapped = sa.exc.DBAPIError.instance("COMMIT", {}, error, ds.OracleError)

    from txpolicy._errors import classify_error_during_commit

    classified = classify_error_during_commit(wrapped)

    assert CommitUnknownError is type(classified)
    assert True is classified.during_commit
    assert False is is_retryable_error(wrapped, during_commit=True)
