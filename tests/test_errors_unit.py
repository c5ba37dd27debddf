"""
``classify_error`` and ``is_retryable_error`` on driver exceptions built the way drivers build them.

psycopg errors come from ``psycopg.errors.lookup``, asyncpg's from ``PostgresError.new`` (what
its protocol calls on an ErrorResponse), PyMySQL's from ``raise_mysql_exception`` fed an error
packet, and SQLite's are provoked for real in-process. SQLAlchemy wraps them with
``DBAPIError.instance`` (what ``Connection._handle_dbapi_exception`` calls) or by running the
statement through an engine. Errors provoked on the real servers are in ``test_errors_real_*``.
"""

from __future__ import annotations

import asyncio
import copy
import sqlite3
import struct
import threading
from pathlib import Path

import asyncpg
import asyncpg.exceptions
import psycopg
import psycopg.errors
import pymysql
import pymysql.err
import pytest
import sqlalchemy as sa
import sqlalchemy.orm
from sqlalchemy.dialects.postgresql.asyncpg import (
    AsyncAdapt_asyncpg_connection,
    AsyncAdapt_asyncpg_dbapi,
)
from sqlalchemy.pool import QueuePool

import txpolicy
from txpolicy import ErrorCategory, TransactionError, classify_error, is_retryable_error
from txpolicy._errors import (
    classify_error_during_commit,
    describe_code,
    fallback_rows,
    mark_during_commit,
    table_rows,
)
from txpolicy._exceptions import CATEGORY_CLASSES, DEFAULT_RETRY_ON

C = ErrorCategory


# -- helpers ----------------------------------------------------------------------------------


def pg_error(code: str, message: str = "boom") -> psycopg.Error:
    """A psycopg 3 error of the class psycopg generates for *code*."""
    return psycopg.errors.lookup(code)(message)


def asyncpg_error(code: str, message: str = "boom") -> asyncpg.PostgresError:
    """An asyncpg error as its protocol builds it from the server's fields."""
    return asyncpg.exceptions.PostgresError.new({"C": code, "M": message, "S": "ERROR"})


def mysql_error(errno: int, message: str, sqlstate: str | None = "HY000") -> pymysql.err.Error:
    """A PyMySQL error as it builds it from the server's error packet."""
    packet = b"\xff" + struct.pack("<h", errno)
    if sqlstate is not None:
        packet += b"#" + sqlstate.encode()
    packet += message.encode()
    try:
        pymysql.err.raise_mysql_exception(packet)
    except pymysql.err.Error as exc:
        return exc
    raise AssertionError("raise_mysql_exception did not raise")


def wrap(orig: BaseException, base: type[Exception], *, invalidated: bool = False) -> BaseException:
    """The exception SQLAlchemy raises for *orig* (``DBAPIError.instance``, as the engine does)."""
    return sa.exc.DBAPIError.instance(
        "SELECT 1", {}, orig, base, connection_invalidated=invalidated
    )


def sa_asyncpg(error: asyncpg.PostgresError | asyncpg.InterfaceError) -> BaseException:
    """SQLAlchemy's emulated DB-API error for an asyncpg error, built by the dialect itself."""
    dbapi = AsyncAdapt_asyncpg_dbapi(asyncpg)
    try:
        try:
            raise error
        except Exception as exc:
            AsyncAdapt_asyncpg_connection._handle_exception_no_connection(dbapi, exc)
    except Exception as translated:
        return translated
    raise AssertionError("the dialect did not translate")


def check(
    classified: BaseException,
    category: ErrorCategory,
    original: BaseException,
    *,
    dialect: str | None,
) -> None:
    """The classified error has the category's class and carries what the contract lists."""
    assert isinstance(classified, TransactionError), repr(classified)
    assert CATEGORY_CLASSES[category] is type(classified)
    assert category == classified.category
    assert dialect == classified.dialect
    assert original is classified.original
    assert False is classified.during_commit
    assert 1 == classified.attempts
    assert None is classified.__cause__
    assert classified is classify_error(classified)


# -- PostgreSQL -------------------------------------------------------------------------------

POSTGRES = [
    ("40P01", C.DEADLOCK),
    ("40001", C.SERIALIZATION),
    ("55P03", C.LOCK_TIMEOUT),
    ("57P01", C.CONNECTION),
    ("57P02", C.CONNECTION),
    ("57P03", C.CONNECTION),
    ("25P03", C.CONNECTION),
    ("08006", C.CONNECTION),
    ("08003", C.CONNECTION),
    ("25006", C.READ_ONLY),
    ("53300", C.RESOURCE),
    ("53200", C.RESOURCE),
    ("57014", C.STATEMENT_TIMEOUT),
    ("40003", C.COMMIT_UNKNOWN),
    ("08007", C.COMMIT_UNKNOWN),
    ("23505", C.INTEGRITY),
    ("23503", C.INTEGRITY),
    ("23502", C.INTEGRITY),
    ("23514", C.INTEGRITY),
    ("22012", C.DATA),
    ("22P02", C.DATA),
    ("22001", C.DATA),
    ("42501", C.PERMISSION),
    ("28P01", C.PERMISSION),
    ("42P01", C.SCHEMA),
    ("42703", C.SCHEMA),
    ("42601", C.SCHEMA),
    ("25P02", C.UNKNOWN),
    ("XX000", C.UNKNOWN),
]


@pytest.mark.parametrize(("code", "category"), [pytest.param(*p, id=p[0]) for p in POSTGRES])
def test_psycopg(code: str, category: ErrorCategory) -> None:
    """psycopg 3: the SQLSTATE decides, raw and wrapped by SQLAlchemy."""
    error = pg_error(code, "the server's message")

    for raised in (error, wrap(error, psycopg.Error)):
        classified = classify_error(raised)

        check(classified, category, error, dialect="postgresql")
        assert code == classified.sqlstate
        assert None is classified.vendor_code
        assert "the server's message" == str(classified)


@pytest.mark.parametrize(("code", "category"), [pytest.param(*p, id=p[0]) for p in POSTGRES])
def test_asyncpg(code: str, category: ErrorCategory) -> None:
    """asyncpg: raw, and as SQLAlchemy's adapter raises it (``original`` is asyncpg's error)."""
    error = asyncpg_error(code, "the server's message")
    emulated = sa_asyncpg(error)
    wrapped = wrap(emulated, AsyncAdapt_asyncpg_dbapi.Error)

    for raised in (error, emulated, wrapped):
        classified = classify_error(raised)

        check(classified, category, error, dialect="postgresql")
        assert code == classified.sqlstate
        assert "the server's message" == str(classified)


@pytest.mark.parametrize(
    ("code", "category"),
    [
        pytest.param("53999", C.RESOURCE, id="53-insufficient-resources"),
        pytest.param("08999", C.CONNECTION, id="08-connection-exception"),
        pytest.param("22999", C.DATA, id="22-data-exception"),
        pytest.param("23999", C.INTEGRITY, id="23-integrity"),
        pytest.param("42999", C.SCHEMA, id="42-syntax-or-access"),
        pytest.param("57999", C.CONNECTION, id="57-operator-intervention"),
        pytest.param("40999", C.UNKNOWN, id="40-never-retried-blindly"),
        pytest.param("ZZ999", C.UNKNOWN, id="unknown-class"),
    ],
)
def test_postgres_class_fallback(code: str, category: ErrorCategory) -> None:
    """A SQLSTATE no table lists lands by its class, as psycopg's ``_base_exc_map`` does."""
    error = asyncpg_error(code)

    assert asyncpg.exceptions._base.UnknownPostgresError is type(error)
    assert category == classify_error(error).category


@pytest.mark.parametrize(
    ("code", "message", "category", "dialect"),
    [
        pytest.param(
            "40001",
            "restart transaction: TransactionRetryWithProtoRefreshError: ReadWithinUncertaintyInterval",
            C.SERIALIZATION,
            "cockroachdb",
            id="40001-restart-transaction",
        ),
        pytest.param(
            "40003", "result is ambiguous (error=rpc error)", C.COMMIT_UNKNOWN, "cockroachdb",
            id="40003-result-is-ambiguous",
        ),  # fmt: skip
        pytest.param(
            "XXA00",
            "transaction committed but schema change aborted with error",
            C.UNKNOWN,
            "cockroachdb",
            id="XXA00",
        ),
        pytest.param("CR000", "restart transaction", C.SERIALIZATION, "cockroachdb", id="CR000"),
        pytest.param(
            "40001", "could not serialize access due to concurrent update", C.SERIALIZATION,
            "postgresql", id="40001-postgres",
        ),  # fmt: skip
    ],
)
def test_cockroachdb(code: str, message: str, category: ErrorCategory, dialect: str) -> None:
    """CockroachDB is named only where its codes or wording are unambiguous."""
    error = asyncpg_error(code, message)

    classified = classify_error(error)

    assert category == classified.category
    assert dialect == classified.dialect
    assert False is is_retryable_error(asyncpg_error("XXA00", message))


def test_psycopg_without_sqlstate_is_a_connection_error() -> None:
    """A real refused connection: psycopg's OperationalError with ``sqlstate is None``."""
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect("host=127.0.0.1 port=1 user=postgres dbname=test connect_timeout=2")

    classified = classify_error(caught.value)

    assert None is caught.value.sqlstate
    check(classified, C.CONNECTION, caught.value, dialect="postgresql")
    assert None is classified.sqlstate


@pytest.mark.parametrize(
    ("message", "category"),
    [
        pytest.param(
            "consuming input failed: server closed the connection unexpectedly\n\tThis "
            "probably means the server terminated abnormally",
            C.CONNECTION,
            id="server-closed",
        ),
        pytest.param("SSL SYSCALL error: EOF detected", C.CONNECTION, id="ssl-syscall"),
        pytest.param(
            'connection failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  '
            "sorry, too many clients already",
            C.RESOURCE,
            id="too-many-clients",
        ),
        pytest.param(
            'connection failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  '
            "remaining connection slots are reserved for roles with the SUPERUSER attribute",
            C.RESOURCE,
            id="reserved-slots",
        ),
        pytest.param(
            'connection failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  '
            'password authentication failed for user "x"',
            C.PERMISSION,
            id="bad-password",
        ),
        pytest.param(
            'connection failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  '
            'database "nope" does not exist',
            C.SCHEMA,
            id="no-database",
        ),
        pytest.param("the connection is closed", C.CONNECTION, id="closed"),
    ],
)
def test_psycopg_messages(message: str, category: ErrorCategory) -> None:
    """Without a SQLSTATE (libpq at connect time, client-side losses) the message decides."""
    error = psycopg.OperationalError(message)

    assert category == classify_error(error).category
    assert category == classify_error(wrap(error, psycopg.Error)).category


def test_psycopg_closed_connection_for_real(postgres_url: str) -> None:
    """Using a closed psycopg connection raises a code-less OperationalError: connection."""
    conn = psycopg.connect(postgres_url.replace("postgresql+psycopg", "postgresql"))
    conn.close()
    with pytest.raises(psycopg.OperationalError) as caught:
        conn.execute("SELECT 1")

    check(classify_error(caught.value), C.CONNECTION, caught.value, dialect="postgresql")


def test_psycopg_pool_timeout_for_real(postgres_url: str) -> None:
    """psycopg_pool's PoolTimeout (a real pool of one, held) is a resource shortage."""
    psycopg_pool = pytest.importorskip("psycopg_pool")
    conninfo = postgres_url.replace("postgresql+psycopg", "postgresql")
    with psycopg_pool.ConnectionPool(conninfo, min_size=1, max_size=1, open=True) as pool:
        with pool.connection(), pytest.raises(psycopg_pool.PoolTimeout) as caught:
            pool.getconn(timeout=0.1)

    classified = classify_error(caught.value)

    check(classified, C.RESOURCE, caught.value, dialect="postgresql")
    assert True is is_retryable_error(caught.value)


def test_asyncpg_refused_connection_is_a_connection_error() -> None:
    """asyncpg lets the OSError of a refused connect through; raised inside asyncpg, it counts."""

    async def connect() -> None:
        await asyncpg.connect(host="127.0.0.1", port=1, user="postgres", timeout=5)

    with pytest.raises(OSError) as caught:
        asyncio.run(connect())

    classified = classify_error(caught.value)

    check(classified, C.CONNECTION, caught.value, dialect="postgresql")
    assert isinstance(classified, ConnectionError)


def test_application_os_error_is_not_a_database_error(tmp_path: Path) -> None:
    """An OSError raised by the application itself is returned unchanged."""
    with pytest.raises(OSError) as caught:
        (tmp_path / "missing").read_text()

    assert caught.value is classify_error(caught.value)
    assert False is is_retryable_error(caught.value)


def test_asyncpg_interface_error_closed() -> None:
    """asyncpg's client-side ``InterfaceError('connection is closed')``, raw and adapted."""
    error = asyncpg.exceptions.InterfaceError("cannot call Connection.execute(): connection is closed")
    emulated = sa_asyncpg(error)

    for raised in (error, emulated, wrap(emulated, AsyncAdapt_asyncpg_dbapi.Error)):
        check(classify_error(raised), C.CONNECTION, error, dialect="postgresql")


# -- MySQL / MariaDB --------------------------------------------------------------------------

MYSQL = [
    (1213, "40001", "Deadlock found when trying to get lock; try restarting transaction", C.DEADLOCK),
    (149, None, "Lock deadlock; Retry transaction", C.DEADLOCK),
    (1614, "XA102", "XA_RBDEADLOCK: Transaction branch was rolled back: deadlock", C.DEADLOCK),
    (1205, "HY000", "Lock wait timeout exceeded; try restarting transaction", C.LOCK_TIMEOUT),
    (3572, "HY000", "Statement aborted because lock(s) could not be acquired immediately", C.LOCK_TIMEOUT),
    (1020, "HY000", "Record has changed since last read in table 't'", C.SERIALIZATION),
    (3101, "40000", "Plugin instructed the server to rollback the current transaction.", C.SERIALIZATION),
    (1927, "70100", "Connection was killed", C.CONNECTION),
    (4031, "HY000", "The client was disconnected by the server because of inactivity.", C.CONNECTION),
    (1053, "08S01", "Server shutdown in progress", C.CONNECTION),
    (1040, "08004", "Too many connections", C.RESOURCE),
    (1226, "42000", "User 'u' has exceeded the 'max_user_connections' resource", C.RESOURCE),
    (1290, "HY000", "The MariaDB server is running with the --read-only option", C.READ_ONLY),
    (1792, "25006", "Cannot execute statement in a READ ONLY transaction", C.READ_ONLY),
    (1836, "HY000", "Running in read-only mode", C.READ_ONLY),
    (1969, "70100", "Query execution was interrupted (max_statement_time exceeded)", C.STATEMENT_TIMEOUT),
    (3024, "HY000", "Query execution was interrupted, maximum statement execution time exceeded", C.STATEMENT_TIMEOUT),
    (1317, "70100", "Query execution was interrupted", C.STATEMENT_TIMEOUT),
    (1180, "HY000", "Got error 1 during COMMIT", C.COMMIT_UNKNOWN),
    (1062, "23000", "Duplicate entry '1' for key 'PRIMARY'", C.INTEGRITY),
    (1452, "23000", "Cannot add or update a child row: a foreign key constraint fails", C.INTEGRITY),
    (4025, "23000", "CONSTRAINT `t.v` failed for `test`.`t`", C.INTEGRITY),
    (3819, "HY000", "Check constraint 'c' is violated.", C.INTEGRITY),
    (1406, "22001", "Data too long for column 's' at row 1", C.DATA),
    (1264, "22003", "Out of range value for column 'v' at row 1", C.DATA),
    (1146, "42S02", "Table 'test.nope' doesn't exist", C.SCHEMA),
    (1064, "42000", "You have an error in your SQL syntax", C.SCHEMA),
    (1142, "42000", "SELECT command denied to user 'u'@'localhost' for table 't'", C.PERMISSION),
    (1045, "28000", "Access denied for user 'u'@'localhost' (using password: YES)", C.PERMISSION),
    (1105, "HY000", "Unknown error", C.UNKNOWN),
]


@pytest.mark.parametrize(
    ("errno", "sqlstate", "message", "category"), [pytest.param(*p, id=str(p[0])) for p in MYSQL]
)
def test_pymysql(errno: int, sqlstate: str | None, message: str, category: ErrorCategory) -> None:
    """PyMySQL: the errno decides whatever DB-API class PyMySQL picked, raw and wrapped."""
    error = mysql_error(errno, message, sqlstate)

    for raised in (error, wrap(error, pymysql.err.Error)):
        classified = classify_error(raised)

        check(classified, category, error, dialect="mysql")
        assert errno == classified.vendor_code
        assert sqlstate == classified.sqlstate
        assert message == str(classified)


def test_pymysql_check_constraint_is_operational_error() -> None:
    """PyMySQL files MariaDB's 4025 under OperationalError; it is still an integrity error."""
    error = mysql_error(4025, "CONSTRAINT `c` failed", "23000")

    assert pymysql.err.OperationalError is type(error)
    assert txpolicy.IntegrityError is type(classify_error(error))
    assert False is is_retryable_error(error)


@pytest.mark.parametrize(
    ("error", "category"),
    [
        pytest.param(
            pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"),
            C.CONNECTION,
            id="2013-lost",
        ),
        pytest.param(
            pymysql.err.OperationalError(2006, "MySQL server has gone away (BrokenPipeError)"),
            C.CONNECTION,
            id="2006-gone-away",
        ),
        pytest.param(
            pymysql.err.OperationalError(
                2003, "Can't connect to MySQL server on '127.0.0.1' ([Errno 111] refused)"
            ),
            C.CONNECTION,
            id="2003-cannot-connect",
        ),
        pytest.param(
            pymysql.err.OperationalError(2055, "Lost connection to server at 'x'"),
            C.CONNECTION,
            id="2055-lost-extended",
        ),
        pytest.param(pymysql.err.OperationalError(2999, "client"), C.CONNECTION, id="2xxx-client"),
        pytest.param(pymysql.err.InterfaceError(0, ""), C.CONNECTION, id="interface-0"),
        pytest.param(pymysql.err.Error("Already closed"), C.CONNECTION, id="already-closed"),
        pytest.param(
            pymysql.err.OperationalError(9999, "new", sqlstate="08S01"),
            C.CONNECTION,
            id="unknown-errno-sqlstate-08",
        ),
        pytest.param(
            pymysql.err.OperationalError(9999, "new", sqlstate="40001"),
            C.SERIALIZATION,
            id="unknown-errno-sqlstate-40001",
        ),
        pytest.param(pymysql.err.OperationalError(9999, "new"), C.UNKNOWN, id="unknown-errno"),
        pytest.param(
            pymysql.err.IntegrityError(9998, "new", sqlstate="HY000"),
            C.INTEGRITY,
            id="unknown-errno-integrity-class",
        ),
    ],
)
def test_pymysql_client_side(error: pymysql.err.Error, category: ErrorCategory) -> None:
    """Client errors (2xxx), PyMySQL's own errors, and unknown numbers with their fallbacks."""
    assert category == classify_error(error).category
    assert category == classify_error(wrap(error, pymysql.err.Error)).category


# -- SQLite (real, in-process) ------------------------------------------------------------------


def sqlite_error(run) -> sqlite3.Error:  # type: ignore[no-untyped-def]
    """The sqlite3 error *run* provokes."""
    with pytest.raises(sqlite3.Error) as caught:
        run()
    return caught.value


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    """A file database with one table."""
    path = str(tmp_path / "t.db")
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)")
        conn.execute("INSERT INTO t VALUES (1, 'a')")
    conn.close()
    return path


def test_sqlite_busy(db_path: str) -> None:
    """Two writers, no busy timeout: SQLITE_BUSY (5), "database is locked": a lock timeout."""
    first = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    second = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    try:
        first.execute("BEGIN IMMEDIATE")
        error = sqlite_error(lambda: second.execute("BEGIN IMMEDIATE"))
    finally:
        first.close()
        second.close()

    classified = classify_error(error)

    check(classified, C.LOCK_TIMEOUT, error, dialect="sqlite")
    assert 5 == classified.vendor_code
    assert None is classified.sqlstate
    assert "database is locked" == str(classified)


def test_sqlite_busy_snapshot(db_path: str) -> None:
    """WAL: a reader that turns writer after another commit gets SQLITE_BUSY_SNAPSHOT (517)."""
    reader = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    writer = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    try:
        reader.execute("PRAGMA journal_mode=WAL")
        reader.execute("BEGIN")
        reader.execute("SELECT * FROM t").fetchall()
        writer.execute("UPDATE t SET v = 'b' WHERE id = 1")
        error = sqlite_error(lambda: reader.execute("UPDATE t SET v = 'c' WHERE id = 1"))
    finally:
        reader.close()
        writer.close()

    classified = classify_error(error)

    assert "database is locked" == str(error)
    check(classified, C.SERIALIZATION, error, dialect="sqlite")
    assert 517 == classified.vendor_code


@pytest.mark.parametrize(
    ("sql", "category", "code"),
    [
        pytest.param("INSERT INTO t VALUES (2, 'a')", C.INTEGRITY, 2067, id="unique"),
        pytest.param("INSERT INTO t VALUES (1, 'z')", C.INTEGRITY, 1555, id="primary-key"),
        pytest.param("SELECT * FROM nope", C.SCHEMA, 1, id="no-such-table"),
        pytest.param("SELEKT 1", C.SCHEMA, 1, id="syntax"),
        pytest.param("INSERT INTO s VALUES ('text')", C.DATA, 3091, id="strict-datatype"),
    ],
)
def test_sqlite_statement_errors(db_path: str, sql: str, category: ErrorCategory, code: int) -> None:
    """Real constraint, schema and datatype failures, by extended code."""
    conn = sqlite3.connect(db_path)
    try:
        conn.execute("CREATE TABLE s (n INTEGER) STRICT")
        error = sqlite_error(lambda: conn.execute(sql))
    finally:
        conn.close()

    classified = classify_error(error)

    check(classified, category, error, dialect="sqlite")
    assert code == classified.vendor_code


def test_sqlite_read_only(db_path: str) -> None:
    """A write through a read-only connection: SQLITE_READONLY (8)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        error = sqlite_error(lambda: conn.execute("DELETE FROM t"))
    finally:
        conn.close()

    check(classify_error(error), C.READ_ONLY, error, dialect="sqlite")


def test_sqlite_interrupted(db_path: str) -> None:
    """A statement stopped by the progress handler: SQLITE_INTERRUPT (9), a statement timeout."""
    conn = sqlite3.connect(db_path)
    try:
        conn.set_progress_handler(lambda: 1, 1)
        error = sqlite_error(lambda: conn.execute("SELECT * FROM t").fetchall())
    finally:
        conn.close()

    classified = classify_error(error)

    check(classified, C.STATEMENT_TIMEOUT, error, dialect="sqlite")
    assert 9 == classified.vendor_code


def test_sqlite_full(tmp_path: Path) -> None:
    """A database over ``max_page_count``: SQLITE_FULL (13), a resource shortage."""
    conn = sqlite3.connect(str(tmp_path / "full.db"))
    try:
        conn.execute("CREATE TABLE big (b BLOB)")
        conn.execute("PRAGMA max_page_count = 3")
        error = sqlite_error(lambda: conn.execute("INSERT INTO big VALUES (zeroblob(100000))"))
    finally:
        conn.close()

    classified = classify_error(error)

    check(classified, C.RESOURCE, error, dialect="sqlite")
    assert 13 == classified.vendor_code


def test_sqlite_cannot_open(tmp_path: Path) -> None:
    """A database file that cannot be opened: SQLITE_CANTOPEN (14), a connection failure."""
    error = sqlite_error(lambda: sqlite3.connect(str(tmp_path / "no" / "such" / "dir.db")))

    check(classify_error(error), C.CONNECTION, error, dialect="sqlite")


def test_sqlite_closed(db_path: str) -> None:
    """Using a closed connection: ProgrammingError without a code, by its message."""
    conn = sqlite3.connect(db_path)
    conn.close()
    error = sqlite_error(lambda: conn.execute("SELECT 1"))

    assert None is getattr(error, "sqlite_errorcode", None)
    check(classify_error(error), C.CONNECTION, error, dialect="sqlite")


@pytest.mark.parametrize(
    ("error", "category"),
    [
        pytest.param(sqlite3.OperationalError("database is locked"), C.LOCK_TIMEOUT, id="locked"),
        pytest.param(
            sqlite3.OperationalError("database table is locked: t"), C.LOCK_TIMEOUT, id="table"
        ),
        pytest.param(
            sqlite3.IntegrityError("UNIQUE constraint failed: t.v"), C.INTEGRITY, id="unique"
        ),
        pytest.param(sqlite3.OperationalError("no such table: nope"), C.SCHEMA, id="no-table"),
        pytest.param(
            sqlite3.OperationalError("attempt to write a readonly database"), C.READ_ONLY,
            id="read-only",
        ),  # fmt: skip
        pytest.param(sqlite3.OperationalError("interrupted"), C.STATEMENT_TIMEOUT, id="interrupted"),
        pytest.param(
            sqlite3.OperationalError("database or disk is full"), C.RESOURCE, id="full"
        ),
        pytest.param(sqlite3.OperationalError("something else"), C.UNKNOWN, id="other"),
        pytest.param(sqlite3.DataError("string or blob too big"), C.DATA, id="too-big"),
    ],
)
def test_sqlite_before_python_311(error: sqlite3.Error, category: ErrorCategory) -> None:
    """Python < 3.11 raises sqlite3 errors with the message only: the message decides."""
    assert None is getattr(error, "sqlite_errorcode", None)
    assert category == classify_error(error).category


def test_sqlite_through_an_engine(db_path: str) -> None:
    """A real statement through a SQLAlchemy engine: the wrapper is classified by ``orig``."""
    engine = sa.create_engine(f"sqlite:///{db_path}")
    try:
        with engine.connect() as conn, pytest.raises(sa.exc.IntegrityError) as caught:
            conn.execute(sa.text("INSERT INTO t VALUES (1, 'dup')"))
    finally:
        engine.dispose()

    classified = classify_error(caught.value)

    check(classified, C.INTEGRITY, caught.value.orig, dialect="sqlite")
    assert 1555 == classified.vendor_code
    assert str(caught.value.orig) == str(classified)


def test_sqlite_lock_through_an_engine(db_path: str) -> None:
    """A real "database is locked" through an engine is a lock timeout, retried by default."""
    engine = sa.create_engine(f"sqlite:///{db_path}", connect_args={"timeout": 0})
    holder = sqlite3.connect(db_path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with engine.begin() as conn, pytest.raises(sa.exc.OperationalError) as caught:
            conn.execute(sa.text("DELETE FROM t"))
    finally:
        holder.close()
        engine.dispose()

    assert txpolicy.LockTimeoutError is type(classify_error(caught.value))
    assert True is is_retryable_error(caught.value)


# -- SQLAlchemy: invalidation, pool, pending rollback ------------------------------------------


def test_connection_invalidated_without_code() -> None:
    """No code, a message that says nothing, but SQLAlchemy invalidated the connection."""
    error = psycopg.DatabaseError("something odd happened")
    wrapped = wrap(error, psycopg.Error, invalidated=True)

    assert True is wrapped.connection_invalidated
    check(classify_error(wrapped), C.CONNECTION, error, dialect="postgresql")
    assert C.UNKNOWN == classify_error(wrap(error, psycopg.Error)).category


def test_code_beats_connection_invalidated() -> None:
    """A SQLSTATE decides even when SQLAlchemy invalidated the connection."""
    wrapped = wrap(pg_error("57014", "canceling statement due to user request"), psycopg.Error,
                   invalidated=True)  # fmt: skip

    assert C.STATEMENT_TIMEOUT == classify_error(wrapped).category


def test_pool_timeout_for_real(db_path: str) -> None:
    """A real QueuePool checkout that times out is a resource shortage."""
    engine = sa.create_engine(
        f"sqlite:///{db_path}", poolclass=QueuePool, pool_size=1, max_overflow=0, pool_timeout=0.1
    )
    try:
        with engine.connect(), pytest.raises(sa.exc.TimeoutError) as caught:
            engine.connect()
    finally:
        engine.dispose()

    classified = classify_error(caught.value)

    check(classified, C.RESOURCE, caught.value, dialect=None)
    assert True is is_retryable_error(caught.value)


def test_pending_rollback_for_real() -> None:
    """A session used after a swallowed flush error raises PendingRollbackError: never retried."""

    class Base(sa.orm.DeclarativeBase):
        pass

    class Row(Base):
        __tablename__ = "t"
        id = sa.Column(sa.Integer, primary_key=True)

    engine = sa.create_engine("sqlite://")
    try:
        Base.metadata.create_all(engine)
        with sa.orm.Session(engine) as session:
            session.add(Row(id=1))
            session.commit()
            session.add(Row(id=1))
            with pytest.raises(sa.exc.IntegrityError):
                session.flush()
            with pytest.raises(sa.exc.PendingRollbackError) as caught:
                session.execute(sa.select(Row))
    finally:
        engine.dispose()

    classified = classify_error(caught.value)

    check(classified, C.UNKNOWN, caught.value, dialect=None)
    assert False is is_retryable_error(caught.value)


def test_disconnection_error() -> None:
    """SQLAlchemy's DisconnectionError (raised by pool events to force a reconnect)."""
    error = sa.exc.DisconnectionError("stale connection")

    assert txpolicy.ConnectionError is type(classify_error(error))


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(sa.exc.ArgumentError("bad argument"), id="argument"),
        pytest.param(sa.exc.NoResultFound("no row"), id="no-result"),
        pytest.param(sa.exc.InvalidRequestError("misuse"), id="invalid-request"),
        pytest.param(
            sa.exc.StatementError("bad bind", "SELECT 1", {}, ValueError("x")), id="statement"
        ),
    ],
)
def test_sqlalchemy_usage_errors_are_not_database_errors(error: Exception) -> None:
    """SQLAlchemy errors about how it is used (not what the database said) stay as they are."""
    assert error is classify_error(error)


# -- chains ------------------------------------------------------------------------------------


def test_application_error_with_database_error_in_context() -> None:
    """An application exception stays itself even with a database error in its ``__context__``."""
    try:
        try:
            raise pg_error("40P01")
        except psycopg.Error:
            raise KeyError("lookup failed")  # noqa: B904 - an implicit context is the point
    except KeyError as exc:
        error = exc

    assert isinstance(error.__context__, psycopg.errors.DeadlockDetected)
    assert error is classify_error(error)


def test_code_found_in_a_driver_chain() -> None:
    """A code-less driver error raised from a coded one: the code decides, and is the original."""
    coded = pg_error("40001", "could not serialize access")
    outer = psycopg.OperationalError("statement failed")
    outer.__cause__ = coded

    classified = classify_error(outer)

    check(classified, C.SERIALIZATION, coded, dialect="postgresql")


def test_cycle_in_the_chain_terminates() -> None:
    """``a.__cause__ is b`` and ``b.__cause__ is a``: classification still ends."""
    first = psycopg.DatabaseError("first")
    second = psycopg.DatabaseError("second")
    first.__cause__ = second
    second.__cause__ = first

    assert C.UNKNOWN == classify_error(first).category


def test_chain_depth_is_limited() -> None:
    """A code buried deeper than the depth limit is not searched for."""
    deepest = pg_error("40P01")
    link: BaseException = deepest
    for _ in range(20):
        outer = psycopg.DatabaseError("wrapper")
        outer.__cause__ = link
        link = outer

    assert C.UNKNOWN == classify_error(link).category


def test_sqlalchemy_error_chained_to_a_database_error() -> None:
    """A SQLAlchemy error raised while handling a driver error unwraps to it."""
    coded = mysql_error(1213, "Deadlock found", "40001")
    error = sa.exc.InvalidRequestError("could not finish")
    error.__cause__ = coded

    check(classify_error(error), C.DEADLOCK, coded, dialect="mysql")


# -- passthrough, idempotence, no mutation -----------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(KeyboardInterrupt(), id="KeyboardInterrupt"),
        pytest.param(SystemExit(1), id="SystemExit"),
        pytest.param(asyncio.CancelledError(), id="CancelledError"),
        pytest.param(GeneratorExit(), id="GeneratorExit"),
        pytest.param(ValueError("x"), id="ValueError"),
        pytest.param(threading.BrokenBarrierError(), id="BrokenBarrierError"),
    ],
)
def test_not_database_errors_pass_through(error: BaseException) -> None:
    """Control-flow exceptions and application errors come back as the very same object."""
    assert error is classify_error(error)
    assert False is is_retryable_error(error)


def test_non_exception_input_comes_back() -> None:
    """Whatever it is given, ``classify_error`` returns it rather than raising."""
    for value in (None, 42, "40P01", object()):
        assert value is classify_error(value)  # type: ignore[arg-type]


def test_already_classified_is_returned_as_is() -> None:
    """``classify_error(c) is c``, including for a TransactionError built by hand."""
    handmade = txpolicy.DeadlockError("by hand")

    assert handmade is classify_error(handmade)
    assert True is is_retryable_error(handmade)


def test_input_is_not_mutated() -> None:
    """Classifying reads the error and its wrapper but changes neither."""
    error = pg_error("40P01")
    wrapped = wrap(error, psycopg.Error)
    before = [(copy.copy(e.__dict__), e.args, e.__cause__, e.__context__, e.__traceback__)
              for e in (error, wrapped)]  # fmt: skip

    classify_error(wrapped)
    classify_error(error)

    after = [(e.__dict__, e.args, e.__cause__, e.__context__, e.__traceback__)
             for e in (error, wrapped)]  # fmt: skip
    assert before == after


@pytest.mark.parametrize("category", list(C), ids=str)
def test_fast_construction_matches_the_constructor(category: ErrorCategory) -> None:
    """The classifier builds results without ``__init__``; they equal constructor-built ones."""
    original = ValueError("driver")
    built = classify_error_during_commit.__globals__["_make"](
        category, (category, "40P01", 7, "postgresql", original, "message")
    )
    expected = CATEGORY_CLASSES[category](
        "message", category=category, sqlstate="40P01", vendor_code=7, dialect="postgresql",
        original=original,
    )  # fmt: skip

    assert type(expected) is type(built)
    assert expected.args == built.args
    assert expected.__dict__ == built.__dict__
    assert str(expected) == str(built)
    assert repr(expected) == repr(built)


# -- verdicts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("category", list(C), ids=str)
def test_default_verdicts(category: ErrorCategory) -> None:
    """``is_retryable_error`` gives the contract's "retried by default" column."""
    error = CATEGORY_CLASSES[category]("x", category=category)

    assert (category in DEFAULT_RETRY_ON) == is_retryable_error(error)
    assert (category in DEFAULT_RETRY_ON) == error.retryable


@pytest.mark.parametrize(
    ("error", "during_commit", "idempotent", "expected"),
    [
        pytest.param(pg_error("57P01"), True, False, False, id="connection-at-commit"),
        pytest.param(pg_error("57P01"), True, True, True, id="connection-at-commit-idempotent"),
        pytest.param(pg_error("57P01"), False, False, True, id="connection-before-commit"),
        pytest.param(pg_error("40P01"), True, False, True, id="deadlock-at-commit"),
        pytest.param(pg_error("40001"), True, False, True, id="serialization-at-commit"),
        pytest.param(pg_error("25P03"), True, False, True, id="idle-timeout-at-commit"),
        pytest.param(pg_error("40003"), False, False, False, id="commit-unknown"),
        pytest.param(pg_error("40003"), False, True, True, id="commit-unknown-idempotent"),
        pytest.param(pg_error("08007"), True, True, True, id="08007-idempotent"),
        pytest.param(pg_error("23505"), True, True, False, id="integrity-never"),
        pytest.param(pg_error("57014"), False, True, False, id="statement-timeout-never"),
        pytest.param(pg_error("25P02"), False, True, False, id="25P02-never"),
        pytest.param(
            psycopg.OperationalError("server closed the connection unexpectedly"), True, False,
            False, id="libpq-loss-at-commit",
        ),  # fmt: skip
        pytest.param(mysql_error(2013, "Lost connection", None), True, False, False,
                     id="mysql-lost-at-commit"),  # fmt: skip
        pytest.param(mysql_error(4031, "disconnected for inactivity"), True, False, True,
                     id="mysql-idle-timeout-at-commit"),  # fmt: skip
        pytest.param(ValueError("x"), True, True, False, id="not-a-database-error"),
    ],
)
def test_commit_verdicts(
    error: BaseException, during_commit: bool, idempotent: bool, expected: bool
) -> None:
    """COMMIT turns connection losses into unknown outcomes; definite rollbacks stay retryable."""
    assert expected == is_retryable_error(error, during_commit=during_commit, idempotent=idempotent)
    classified = classify_error(error)
    assert expected == is_retryable_error(
        classified, during_commit=during_commit, idempotent=idempotent
    )


def test_classify_during_commit() -> None:
    """The shell's helper: a connection loss at COMMIT becomes CommitUnknownError."""
    error = pg_error("57P01", "terminating connection due to administrator command")
    wrapped = wrap(error, psycopg.Error)

    classified = classify_error_during_commit(wrapped)

    check_fields = (classified.sqlstate, classified.dialect, classified.original, str(classified))
    assert txpolicy.CommitUnknownError is type(classified)
    assert C.COMMIT_UNKNOWN == classified.category
    assert True is classified.during_commit
    assert ("57P01", "postgresql", error, str(error)) == check_fields
    assert False is is_retryable_error(classified)
    assert True is is_retryable_error(classified, idempotent=True)
    assert None is classified.__cause__


def test_mark_during_commit_keeps_definite_rollbacks() -> None:
    """A deadlock raised by COMMIT stays a deadlock (marked), retryable; the input is untouched."""
    classified = classify_error(pg_error("40P01"))

    marked = mark_during_commit(classified)

    assert txpolicy.DeadlockError is type(marked)
    assert True is marked.during_commit
    assert False is classified.during_commit
    assert True is is_retryable_error(marked)
    assert marked is mark_during_commit(marked)


def test_mark_during_commit_idle_timeout_stays_connection() -> None:
    """25P03 at COMMIT: the server ended the idle transaction first, a definite rollback."""
    marked = classify_error_during_commit(pg_error("25P03"))

    assert txpolicy.ConnectionError is type(marked)
    assert True is marked.during_commit
    assert True is is_retryable_error(marked, during_commit=True)


def test_mark_during_commit_leaves_other_errors() -> None:
    """Application errors pass through the commit helper unchanged."""
    error = ValueError("x")

    assert error is classify_error_during_commit(error)


# -- tables ------------------------------------------------------------------------------------


def test_table_rows_shape_and_order() -> None:
    """``table_rows()``: 4-tuples in a stable order, every code named, no duplicates."""
    rows = table_rows()
    dialects = [row.dialect for row in rows]

    assert rows == table_rows()
    assert all(len(row) == 4 for row in rows)
    assert all(row.condition_name for row in rows), [r for r in rows if not r.condition_name]
    assert all(isinstance(row.category, ErrorCategory) for row in rows)
    assert ["postgresql", "cockroachdb", "mysql", "sqlite", "mssql", "oracle"] == list(
        dict.fromkeys(dialects)
    )
    assert sorted(dialects, key=dialects.index) == dialects  # each dialect in one block
    keys = [(row.dialect, row.code) for row in rows]
    assert len(set(keys)) == len(keys)


def test_fallback_rows() -> None:
    """``fallback_rows()``: the SQLSTATE class fallbacks, named, in the same shape."""
    rows = fallback_rows()

    assert ("postgresql", "40", C.UNKNOWN) in {(r.dialect, r.code, r.category) for r in rows}
    assert all(row.condition_name for row in rows)


DECIDED = [
    ("postgresql", "55P03", C.LOCK_TIMEOUT),
    ("mysql", 1205, C.LOCK_TIMEOUT),
    ("mysql", 3572, C.LOCK_TIMEOUT),
    ("sqlite", 5, C.LOCK_TIMEOUT),
    ("mysql", 1020, C.SERIALIZATION),
    ("sqlite", 517, C.SERIALIZATION),
    ("postgresql", "57014", C.STATEMENT_TIMEOUT),
    ("mysql", 1969, C.STATEMENT_TIMEOUT),
    ("mysql", 3024, C.STATEMENT_TIMEOUT),
    ("mysql", 1317, C.STATEMENT_TIMEOUT),
    ("postgresql", "57P01", C.CONNECTION),
    ("postgresql", "57P02", C.CONNECTION),
    ("postgresql", "57P03", C.CONNECTION),
    ("postgresql", "25P03", C.CONNECTION),
    ("mysql", 2006, C.CONNECTION),
    ("mysql", 2013, C.CONNECTION),
    ("mysql", 2055, C.CONNECTION),
    ("mysql", 1927, C.CONNECTION),
    ("mysql", 4031, C.CONNECTION),
    ("mysql", 1053, C.CONNECTION),
    ("postgresql", "53300", C.RESOURCE),
    ("mysql", 1040, C.RESOURCE),
    ("mysql", 1226, C.RESOURCE),
    ("postgresql", "25006", C.READ_ONLY),
    ("mysql", 1290, C.READ_ONLY),
    ("mysql", 1792, C.READ_ONLY),
    ("mysql", 1836, C.READ_ONLY),
    ("postgresql", "40003", C.COMMIT_UNKNOWN),
    ("postgresql", "08007", C.COMMIT_UNKNOWN),
    ("cockroachdb", "40003", C.COMMIT_UNKNOWN),
    ("cockroachdb", "40001", C.SERIALIZATION),
    ("mysql", 4025, C.INTEGRITY),
    ("postgresql", "25P02", C.UNKNOWN),
    ("cockroachdb", "XXA00", C.UNKNOWN),
    ("mysql", 1213, C.DEADLOCK),
    ("mysql", 149, C.DEADLOCK),
    ("mysql", 1614, C.DEADLOCK),
    ("mysql", 3101, C.SERIALIZATION),
    ("postgresql", "40P01", C.DEADLOCK),
    ("postgresql", "40001", C.SERIALIZATION),
]


@pytest.mark.parametrize(
    ("dialect", "code", "category"), [pytest.param(*d, id=f"{d[0]}-{d[1]}") for d in DECIDED]
)
def test_contract_decisions_are_in_the_tables(
    dialect: str, code: int | str, category: ErrorCategory
) -> None:
    """Every placement CONTRACT §2 decides is a row of the tables, and what the CLI reports."""
    rows = {(row.dialect, row.code): row.category for row in table_rows()}

    assert category == rows[(dialect, code)]
    assert category == describe_code(str(code), dialect).category
