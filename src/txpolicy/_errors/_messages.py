"""
Message fallbacks, for errors that carry no code.

They are consulted last: only when neither a SQLSTATE nor a vendor code is present
(libpq client-side failures, connect-time errors, SQLite before Python 3.11, driver
wrappers such as PyMySQL's ``Error("Already closed")``). Matching is by lower-cased
substring, in order, so the more specific entries come first; no regular expressions.

Sources: libpq ``fe-misc.c`` / ``fe-connect.c`` / ``fe-secure-openssl.c`` messages;
``src/backend/utils/init/postinit.c`` and ``postmaster`` for the connect-time FATALs;
MySQL "Client Error Message Reference"; SQLite ``sqlite3ErrStr()``; SQLAlchemy's
``is_disconnect()`` lists (``lib/sqlalchemy/dialects/*/``).
"""

from __future__ import annotations

from collections.abc import Sequence

from .._exceptions import ErrorCategory as C

Patterns = Sequence[tuple[str, C]]

POSTGRESQL: Patterns = (
    ("too many clients already", C.RESOURCE),  # 53300 at connect time
    ("too many connections", C.RESOURCE),  # 53300 "... for role" / "... for database"
    ("remaining connection slots are reserved", C.RESOURCE),  # 53300 at connect time
    ("no more connections allowed", C.RESOURCE),  # PgBouncer max_client_conn
    ("password authentication failed", C.PERMISSION),  # 28P01 at connect time
    ("no pg_hba.conf entry", C.PERMISSION),  # 28000 at connect time
    ('role "', C.PERMISSION),  # 28000 'role "x" does not exist', '... is not permitted to log in'
    ("permission denied", C.PERMISSION),  # 42501 / 28000
    ("deadlock detected", C.DEADLOCK),  # 40P01
    ("could not serialize access", C.SERIALIZATION),  # 40001
    ("restart transaction", C.SERIALIZATION),  # CockroachDB 40001
    ("due to lock timeout", C.LOCK_TIMEOUT),  # 55P03
    ("could not obtain lock", C.LOCK_TIMEOUT),  # 55P03 NOWAIT
    ("due to statement timeout", C.STATEMENT_TIMEOUT),  # 57014
    ("due to user request", C.STATEMENT_TIMEOUT),  # 57014 cancel
    ("read-only transaction", C.READ_ONLY),  # 25006
    ("the database system is starting up", C.CONNECTION),  # 57P03
    ("the database system is shutting down", C.CONNECTION),  # 57P03
    ("the database system is in recovery mode", C.CONNECTION),  # 57P03
    ('" does not exist', C.SCHEMA),  # 3D000 'database "x" does not exist'
    ("server closed the connection unexpectedly", C.CONNECTION),
    ("ssl syscall error", C.CONNECTION),
    ("ssl connection has been closed", C.CONNECTION),
    ("ssl error", C.CONNECTION),
    ("terminating connection", C.CONNECTION),  # 57P01 and friends, as text
    ("connection is closed", C.CONNECTION),  # psycopg, asyncpg
    ("connection already closed", C.CONNECTION),  # psycopg2
    ("connection was closed", C.CONNECTION),  # asyncpg
    ("connection is lost", C.CONNECTION),
    ("connection not open", C.CONNECTION),
    ("consuming input failed", C.CONNECTION),  # psycopg 3
    ("sending query failed", C.CONNECTION),  # psycopg 3
    ("sending query and params failed", C.CONNECTION),  # psycopg 3
    ("could not receive data from server", C.CONNECTION),
    ("could not send data to server", C.CONNECTION),
    ("lost synchronization with server", C.CONNECTION),
    ("no connection to the server", C.CONNECTION),
    ("could not connect to server", C.CONNECTION),
    ("connection refused", C.CONNECTION),
    ("connection reset", C.CONNECTION),
    ("connection timed out", C.CONNECTION),
    ("timeout expired", C.CONNECTION),  # libpq connect_timeout
    ("server conn crashed", C.CONNECTION),  # PgBouncer
    ("connection failed", C.CONNECTION),  # psycopg 3 connect
)

MYSQL: Patterns = (
    ("too many connections", C.RESOURCE),  # 1040
    ("access denied", C.PERMISSION),  # 1045 and friends
    ("deadlock found", C.DEADLOCK),  # 1213
    ("wsrep detected deadlock", C.DEADLOCK),  # Galera
    ("lock wait timeout exceeded", C.LOCK_TIMEOUT),  # 1205
    ("record has changed since last read", C.SERIALIZATION),  # 1020
    ("maximum statement execution time exceeded", C.STATEMENT_TIMEOUT),  # 1969 / 3024
    ("query execution was interrupted", C.STATEMENT_TIMEOUT),  # 1317
    ("read-only", C.READ_ONLY),  # 1290 / 1836
    ("read only", C.READ_ONLY),  # 1792
    ("lost connection", C.CONNECTION),  # 2013
    ("gone away", C.CONNECTION),  # 2006
    ("already closed", C.CONNECTION),  # PyMySQL Error("Already closed")
    ("connection was killed", C.CONNECTION),  # 1927
    ("can't connect", C.CONNECTION),  # 2002 / 2003
    ("connection refused", C.CONNECTION),
    ("connection reset", C.CONNECTION),
    ("broken pipe", C.CONNECTION),
    ("server shutdown in progress", C.CONNECTION),  # 1053
    ("disconnected by the server", C.CONNECTION),  # 4031
    ("connection is closed", C.CONNECTION),
)

SQLITE: Patterns = (
    ("database is locked", C.LOCK_TIMEOUT),  # SQLITE_BUSY
    ("database table is locked", C.LOCK_TIMEOUT),  # SQLITE_LOCKED
    ("database schema is locked", C.LOCK_TIMEOUT),  # SQLITE_LOCKED
    ("constraint failed", C.INTEGRITY),  # SQLITE_CONSTRAINT
    ("datatype mismatch", C.DATA),  # SQLITE_MISMATCH
    ("string or blob too big", C.DATA),  # SQLITE_TOOBIG
    ("no such table", C.SCHEMA),  # SQLITE_ERROR
    ("no such column", C.SCHEMA),  # SQLITE_ERROR
    ("syntax error", C.SCHEMA),  # SQLITE_ERROR
    ("already exists", C.SCHEMA),  # SQLITE_ERROR
    ("readonly database", C.READ_ONLY),  # SQLITE_READONLY
    ("interrupted", C.STATEMENT_TIMEOUT),  # SQLITE_INTERRUPT
    ("database or disk is full", C.RESOURCE),  # SQLITE_FULL
    ("disk i/o error", C.RESOURCE),  # SQLITE_IOERR
    ("out of memory", C.RESOURCE),  # SQLITE_NOMEM
    ("unable to open database file", C.CONNECTION),  # SQLITE_CANTOPEN
    ("cannot operate on a closed database", C.CONNECTION),  # sqlite3 ProgrammingError
    ("no active connection", C.CONNECTION),  # aiosqlite
    ("connection closed", C.CONNECTION),  # aiosqlite
)

MSSQL: Patterns = (
    ("deadlock victim", C.DEADLOCK),  # 1205
    ("lock request time out", C.LOCK_TIMEOUT),  # 1222
    ("snapshot isolation", C.SERIALIZATION),  # 3960
    ("communication link failure", C.CONNECTION),  # 08S01
    ("tcp provider", C.CONNECTION),
    ("connection is busy", C.CONNECTION),
    ("dbprocess is dead", C.CONNECTION),  # FreeTDS 20047
    ("closed connection", C.CONNECTION),  # pyodbc "Attempt to use a closed connection."
    ("connection reset", C.CONNECTION),
    ("not connected", C.CONNECTION),
)

ORACLE: Patterns = (
    ("deadlock detected", C.DEADLOCK),  # ORA-00060
    ("can't serialize access", C.SERIALIZATION),  # ORA-08177
    ("end-of-file on communication channel", C.CONNECTION),  # ORA-03113
    ("closed the connection", C.CONNECTION),  # DPY-4011
    ("not connected", C.CONNECTION),  # DPY-1001 / ORA-03114
)

GENERIC: Patterns = (
    ("deadlock", C.DEADLOCK),
    ("could not serialize", C.SERIALIZATION),
    ("lock wait timeout", C.LOCK_TIMEOUT),
    ("too many connections", C.RESOURCE),
    ("too many clients", C.RESOURCE),
    ("server closed the connection", C.CONNECTION),
    ("lost connection", C.CONNECTION),
    ("gone away", C.CONNECTION),
    ("connection is closed", C.CONNECTION),
    ("connection was closed", C.CONNECTION),
    ("connection reset", C.CONNECTION),
    ("connection refused", C.CONNECTION),
    ("broken pipe", C.CONNECTION),
    ("terminating connection", C.CONNECTION),
)
"""For drivers txpolicy has no table for (under SQLAlchemy only)."""

BY_DIALECT: dict[str | None, Patterns] = {
    "postgresql": POSTGRESQL,
    "cockroachdb": POSTGRESQL,
    "mysql": MYSQL,
    "sqlite": SQLITE,
    "mssql": MSSQL,
    "oracle": ORACLE,
}


def category(dialect: str | None, message: str) -> C | None:
    """The category the text of *message* points at for *dialect*, or None."""
    if not message:
        return None
    text = message.lower()
    for needle, found in BY_DIALECT.get(dialect, GENERIC):
        if needle in text:
            return found
    return None
