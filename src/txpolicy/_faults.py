"""
Fault injection: the next statements or commits on a bind fail with a real driver error.

A fault is raised by the driver itself wherever a server can be asked to raise it, so the
exception is the driver's own object, built by the driver's own code from a real error
response, and everything after that (SQLAlchemy's async adapters, ``DBAPIError`` wrapping,
``is_disconnect`` and invalidation) is SQLAlchemy's ordinary path:

- PostgreSQL (psycopg, asyncpg): ``DO`` + ``RAISE ... USING ERRCODE`` makes the server send
  the SQLSTATE (and aborts the transaction, as any PostgreSQL error does); a connection
  fault is ``pg_terminate_backend(pg_backend_pid())``, the FATAL ``57P01`` of a terminated
  backend, after which the driver reports the connection broken.
- MySQL / MariaDB (PyMySQL): ``SIGNAL SQLSTATE ... SET MYSQL_ERRNO`` makes the server send
  the error number (a deadlock rolls the transaction back first, as InnoDB does); a
  connection fault shuts the client socket down, and PyMySQL raises its own 2006.
- SQLite (sqlite3, aiosqlite) has no server to ask: the ``sqlite3`` exception is built the
  way CPython builds it (class from the primary result code, ``sqlite_errorcode`` and
  ``sqlite_errorname`` on Python 3.11+) and handed to the async adapter when there is one.

Where the fault is raised: statements through the ``do_execute``, ``do_execute_no_params``
and ``do_executemany`` dialect events, which run inside the ``try`` block of
``Connection._exec_single_context``; commits through the dialect's ``do_commit``, replaced
on the dialect *instance* while faults are registered, because SQLAlchemy's ``commit``
connection event runs before the ``try`` block of ``Connection._commit_impl`` and an error
raised there would escape unwrapped. The ``do_commit`` override goes with the last fault;
the listeners stay, and do nothing while no fault is registered.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, NoReturn, cast

import attrs
from sqlalchemy import event as _event
from sqlalchemy import pool as _pool
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.orm import sessionmaker

from ._database import _BaseDatabase
from ._exceptions import ErrorCategory

if TYPE_CHECKING:
    from types import TracebackType

    from sqlalchemy.engine.interfaces import ExecutionContext
    from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
    from typing_extensions import Self

    from ._database import AsyncDatabase, Database

    FaultTarget = (
        Engine
        | AsyncEngine
        | sessionmaker[Any]
        | async_sessionmaker[Any]
        | Database
        | AsyncDatabase
    )

At = Literal["statement", "commit"]
_AT_VALUES: tuple[str, ...] = ("statement", "commit")

C = ErrorCategory

# Connections that SQLAlchemy opens to initialize a dialect on first connect run statements
# (server version, encodings) that belong to no caller: a fault must never land there.
_AdhocProxiedConnection: type[Any] | None = getattr(_pool, "_AdhocProxiedConnection", None)


# --- what each database raises (data) -----------------------------------------------------


POSTGRES_ERRORS: Mapping[ErrorCategory, tuple[str, str]] = {
    C.DEADLOCK: ("40P01", "deadlock detected"),  # deadlock_detected
    C.SERIALIZATION: ("40001", "could not serialize access due to concurrent update"),
    C.LOCK_TIMEOUT: ("55P03", "canceling statement due to lock timeout"),  # lock_not_available
    C.READ_ONLY: ("25006", "cannot execute UPDATE in a read-only transaction"),
    C.RESOURCE: ("53300", "sorry, too many clients already"),  # too_many_connections
    C.STATEMENT_TIMEOUT: ("57014", "canceling statement due to statement timeout"),
    C.COMMIT_UNKNOWN: ("40003", "result is ambiguous"),  # statement_completion_unknown
    C.INTEGRITY: ("23505", 'duplicate key value violates unique constraint "txpolicy_pkey"'),
    C.DATA: ("22P02", 'invalid input syntax for type integer: "txpolicy"'),
    C.PERMISSION: ("42501", "permission denied for table txpolicy"),  # insufficient_privilege
    C.SCHEMA: ("42P01", 'relation "txpolicy" does not exist'),  # undefined_table
    C.UNKNOWN: ("XX000", "cache lookup failed for relation 0"),  # internal_error
}
"""SQLSTATE and server message per category; CONNECTION terminates the backend instead."""

_MYSQL_READ_ONLY = (
    "The {} server is running with the --read-only option so it cannot execute this statement"
)

MYSQL_ERRORS: Mapping[ErrorCategory, tuple[int, str, str]] = {
    C.DEADLOCK: (
        1213,
        "40001",
        "Deadlock found when trying to get lock; try restarting transaction",
    ),
    C.SERIALIZATION: (1020, "HY000", "Record has changed since last read in table 'txpolicy'"),
    C.LOCK_TIMEOUT: (1205, "HY000", "Lock wait timeout exceeded; try restarting transaction"),
    C.READ_ONLY: (1290, "HY000", _MYSQL_READ_ONLY),  # ER_OPTION_PREVENTS_STATEMENT
    C.RESOURCE: (1040, "08004", "Too many connections"),  # ER_CON_COUNT_ERROR
    C.STATEMENT_TIMEOUT: (
        1969,
        "70100",
        "Query execution was interrupted (max_statement_time exceeded)",
    ),
    C.INTEGRITY: (1062, "23000", "Duplicate entry '1' for key 'PRIMARY'"),  # ER_DUP_ENTRY
    C.DATA: (1264, "22003", "Out of range value for column 'id' at row 1"),
    C.PERMISSION: (
        1142,
        "42000",
        "UPDATE command denied to user 'txpolicy'@'localhost' for table `txpolicy`",
    ),
    C.SCHEMA: (1146, "42S02", "Table 'test.txpolicy' doesn't exist"),  # ER_NO_SUCH_TABLE
    C.UNKNOWN: (1105, "HY000", "Unknown error"),  # ER_UNKNOWN_ERROR
}
"""Error number, SQLSTATE and MariaDB's message per category; CONNECTION drops the socket."""

MYSQL_STATEMENT_TIMEOUT = (
    3024,
    "HY000",
    "Query execution was interrupted, maximum statement execution time exceeded",
)
"""MySQL's own statement timeout (``max_execution_time``); MariaDB sends 1969."""

SQLITE_ERRORS: Mapping[ErrorCategory, tuple[str, int, str, str]] = {
    C.LOCK_TIMEOUT: ("OperationalError", 5, "SQLITE_BUSY", "database is locked"),
    C.SERIALIZATION: ("OperationalError", 517, "SQLITE_BUSY_SNAPSHOT", "database is locked"),
    C.INTEGRITY: (
        "IntegrityError",
        2067,
        "SQLITE_CONSTRAINT_UNIQUE",
        "UNIQUE constraint failed: txpolicy.id",
    ),
    C.DATA: ("DataError", 18, "SQLITE_TOOBIG", "string or blob too big"),
    C.SCHEMA: ("OperationalError", 1, "SQLITE_ERROR", "no such table: txpolicy"),
}
"""sqlite3 class, extended result code, its name and message per category.

SQLite has no deadlock, connection or ambiguous-commit error, so those categories cannot be
injected; the class is the one CPython's ``_pysqlite_seterror`` picks for the primary code.
"""


# --- how a fault is raised (shells) -------------------------------------------------------


class _Driver:
    """The way faults are raised on one family of drivers."""

    title = ""
    drivers: frozenset[str] = frozenset()

    def supported(self) -> frozenset[ErrorCategory]:
        """The categories this driver can produce."""
        raise NotImplementedError

    def fire(
        self,
        category: ErrorCategory,
        at: At,
        connection: Any,
        dialect: Dialect,
        commit: Callable[[Any], None],
    ) -> None:
        """Make *connection* (a pool-proxied DBAPI connection) raise the fault."""
        raise NotImplementedError


def _run(connection: Any, statements: Iterable[str]) -> None:
    """Execute *statements* on a fresh plain cursor of *connection* (the last one must fail)."""
    cursor = connection.cursor()
    try:
        for statement in statements:
            cursor.execute(statement)
    finally:
        # The connection may be gone by now; the fault, not a close error, must surface.
        with contextlib.suppress(Exception):
            cursor.close()


def _sql_string(value: str) -> str:
    """A single-quoted SQL literal for one of this module's constant messages."""
    return "'" + value.replace("'", "''") + "'"


class _Postgres(_Driver):
    title = "PostgreSQL"
    drivers = frozenset({"psycopg", "asyncpg"})

    def supported(self) -> frozenset[ErrorCategory]:
        return frozenset(POSTGRES_ERRORS) | {C.CONNECTION}

    def fire(
        self,
        category: ErrorCategory,
        at: At,  # noqa: ARG002 - the same server error fits a statement and a COMMIT
        connection: Any,
        dialect: Dialect,  # noqa: ARG002
        commit: Callable[[Any], None],  # noqa: ARG002
    ) -> None:
        if category is C.CONNECTION:
            # The second statement only runs if the FATAL error were ever late.
            _run(connection, ["SELECT pg_terminate_backend(pg_backend_pid())", "SELECT 1"])
            return
        sqlstate, message = POSTGRES_ERRORS[category]
        _run(
            connection,
            [
                (
                    "DO $txpolicy$ BEGIN RAISE EXCEPTION USING "
                    f"ERRCODE = '{sqlstate}', MESSAGE = {_sql_string(message)}; END $txpolicy$"
                )
            ],
        )


class _MySQL(_Driver):
    title = "MySQL / MariaDB"
    drivers = frozenset({"pymysql"})

    def supported(self) -> frozenset[ErrorCategory]:
        return frozenset(MYSQL_ERRORS) | {C.CONNECTION}

    def fire(
        self,
        category: ErrorCategory,
        at: At,
        connection: Any,
        dialect: Dialect,
        commit: Callable[[Any], None],
    ) -> None:
        mariadb = bool(getattr(dialect, "is_mariadb", False))
        if category is C.CONNECTION:
            self._drop_socket(connection)
            if at == "commit":
                commit(connection)
            else:
                _run(connection, ["SELECT 1"])
            return
        errno, sqlstate, message = MYSQL_ERRORS[category]
        if category is C.STATEMENT_TIMEOUT and not mariadb:
            errno, sqlstate, message = MYSQL_STATEMENT_TIMEOUT
        message = message.format("MariaDB" if mariadb else "MySQL")
        signal = (
            f"SIGNAL SQLSTATE '{sqlstate}' SET MYSQL_ERRNO = {errno}, "
            f"MESSAGE_TEXT = {_sql_string(message)}"
        )
        # InnoDB answers a deadlock by rolling the whole transaction back.
        _run(connection, ["ROLLBACK", signal] if category is C.DEADLOCK else [signal])

    @staticmethod
    def _drop_socket(connection: Any) -> None:
        """Shut the client socket, so that PyMySQL loses the connection on its next write."""
        sock = getattr(connection.dbapi_connection, "_sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _SQLite(_Driver):
    title = "SQLite"
    drivers = frozenset({"pysqlite", "aiosqlite"})

    def supported(self) -> frozenset[ErrorCategory]:
        categories = frozenset(SQLITE_ERRORS)
        if sys.version_info < (3, 11):
            # Before 3.11 CPython sets no sqlite_errorcode: BUSY_SNAPSHOT looks like BUSY.
            categories -= {C.SERIALIZATION}
        return categories

    def fire(
        self,
        category: ErrorCategory,
        at: At,  # noqa: ARG002
        connection: Any,
        dialect: Dialect,  # noqa: ARG002
        commit: Callable[[Any], None],  # noqa: ARG002
    ) -> None:
        import sqlite3  # noqa: PLC0415 - only SQLite binds need it

        class_name, code, name, message = SQLITE_ERRORS[category]
        error = getattr(sqlite3, class_name)(message)
        if sys.version_info >= (3, 11):
            error.sqlite_errorcode = code
            error.sqlite_errorname = name
        adapter = getattr(connection.dbapi_connection, "_handle_exception", None)
        if adapter is not None:
            # aiosqlite: the adapter re-raises sqlite3 errors the way it does for real ones.
            adapter(error)
        raise error


_DRIVERS: Mapping[str, _Driver] = {
    "postgresql": _Postgres(),
    "mysql": _MySQL(),
    "mariadb": _MySQL(),
    "sqlite": _SQLite(),
}


def driver_for(dialect: Dialect) -> _Driver:
    """The fault driver of *dialect*, or ``ValueError`` naming what is supported."""
    driver = _DRIVERS.get(dialect.name)
    if driver is None or dialect.driver not in driver.drivers:
        supported = ", ".join(
            f"{name}+{drv}" for name, d in _DRIVERS.items() for drv in sorted(d.drivers)
        )
        msg = (
            f"inject_fault() does not support {dialect.name}+{dialect.driver}; "
            f"it supports {supported}"
        )
        raise ValueError(msg)
    return driver


# --- handles and hooks --------------------------------------------------------------------


@attrs.define(eq=False, repr=False)
class FaultHandle:
    """
    An injected fault: counts what it fired and removes it.

    Returned by :func:`~txpolicy.testing.inject_fault`. Use it as a context manager to remove
    the fault when the block ends, or call :meth:`remove`. Counting is thread-safe: two
    statements running at the same time never both take the last fault.

    .. versionadded:: 0.1.0
    """

    _category: ErrorCategory
    _at: At
    _times: int
    _hooks: tuple[_Hooks, ...]
    _fired: int = attrs.field(default=0, init=False)
    _removed: bool = attrs.field(default=False, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)

    @property
    def category(self) -> ErrorCategory:
        """The category of the errors this fault raises."""
        return self._category

    @property
    def at(self) -> At:
        """``"statement"`` or ``"commit"``: what fails."""
        return self._at

    @property
    def times(self) -> int:
        """How many statements or commits this fault was asked to fail."""
        return self._times

    @property
    def fired(self) -> int:
        """How many statements or commits this fault has failed so far."""
        return self._fired

    @property
    def remaining(self) -> int:
        """How many more it will fail (0 once it is exhausted or removed)."""
        with self._lock:
            return 0 if self._removed else self._times - self._fired

    @property
    def active(self) -> bool:
        """Whether it will fail another statement or commit."""
        return self.remaining > 0

    def remove(self) -> None:
        """Stop injecting this fault; removing it again does nothing."""
        with self._lock:
            if self._removed:
                return
            self._removed = True
            hooks, self._hooks = self._hooks, ()
        for hook in hooks:
            hook.discard(self)

    def __enter__(self) -> Self:
        """Return the handle; the fault is removed when the block ends."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Remove the fault."""
        self.remove()

    def __repr__(self) -> str:
        return (
            f"<FaultHandle {self._category.name} at={self._at!r} "
            f"fired={self._fired}/{self._times}{' removed' if self._removed else ''}>"
        )

    def _take(self, at: At) -> bool:
        """Claim one firing, if this fault is for *at* and has one left."""
        if self._at != at:
            return False
        with self._lock:
            if self._removed or self._fired >= self._times:
                return False
            self._fired += 1
            return True


_INSTALL_LOCK = threading.Lock()


class _Hooks:
    """The event listeners and ``do_commit`` override of one dialect instance."""

    def __init__(self, dialect: Dialect, driver: _Driver) -> None:
        self.dialect = dialect
        self.driver = driver
        # Copy-on-write, so that the statement path reads it without a lock.
        self.handles: tuple[FaultHandle, ...] = ()
        self.original_commit: Callable[[Any], None] = dialect.do_commit
        self.listening = False
        self.listeners: tuple[tuple[str, Callable[..., bool]], ...] = (
            ("do_execute", self.on_execute),
            ("do_execute_no_params", self.on_execute_no_params),
            ("do_executemany", self.on_execute),
        )

    @classmethod
    def of(cls, dialect: Dialect) -> _Hooks:
        """The hooks of *dialect*; call with ``_INSTALL_LOCK`` held."""
        hooks: _Hooks | None = dialect.__dict__.get("_txpolicy_fault_hooks")
        if hooks is None:
            hooks = cls(dialect, driver_for(dialect))
            dialect._txpolicy_fault_hooks = hooks  # type: ignore[attr-defined]
        return hooks

    def add(self, handle: FaultHandle) -> None:
        """Register *handle*, installing the hooks with the first one."""
        with _INSTALL_LOCK:
            if not self.listening:
                # Listeners stay for the dialect's life (a no-op without faults): SQLAlchemy
                # iterates a live deque when it dispatches, so adding or removing one while
                # another thread runs a statement could fail that statement.
                for name, listener in self.listeners:
                    _event.listen(self.dialect, name, listener)
                self.listening = True
            if not self.handles:
                self.original_commit = self.dialect.do_commit
                self.dialect.do_commit = self.do_commit  # type: ignore[method-assign]
            self.handles = (*self.handles, handle)

    def discard(self, handle: FaultHandle) -> None:
        """Forget *handle*, giving the dialect its own ``do_commit`` back with the last one."""
        with _INSTALL_LOCK:
            if handle not in self.handles:
                return
            self.handles = tuple(h for h in self.handles if h is not handle)
            if not self.handles and self.dialect.__dict__.get("do_commit") == self.do_commit:
                del self.dialect.do_commit

    def claim(self, at: At) -> FaultHandle | None:
        """The first registered fault for *at* that still has a firing left, now taken."""
        for handle in self.handles:
            if handle._take(at):
                return handle
        return None

    def on_execute(
        self,
        cursor: Any,
        statement: str,
        parameters: Any,  # noqa: ARG002 - the statement that draws a fault is not run
        context: ExecutionContext | None,
    ) -> bool:
        """``do_execute`` / ``do_executemany`` listener."""
        return self.on_execute_no_params(cursor, statement, context)

    def on_execute_no_params(
        self,
        cursor: Any,  # noqa: ARG002 - a fresh cursor is used: this one may be server-side
        statement: str,  # noqa: ARG002
        context: ExecutionContext | None,
    ) -> bool:
        """``do_execute_no_params`` listener: fail the statement when a fault is due."""
        if not self.handles or context is None:
            return False
        connection = context.root_connection.connection
        if _AdhocProxiedConnection is not None and isinstance(connection, _AdhocProxiedConnection):
            return False
        handle = self.claim("statement")
        if handle is None:
            return False
        return self.fire(handle, connection)

    def do_commit(self, dbapi_connection: Any) -> None:
        """Replacement of ``dialect.do_commit``: fail the COMMIT when a fault is due."""
        handle = self.claim("commit") if self.handles else None
        if handle is None:
            self.original_commit(dbapi_connection)
            return
        self.fire(handle, dbapi_connection)

    def fire(self, handle: FaultHandle, connection: Any) -> NoReturn:
        """Raise *handle*'s fault through the driver; never returns."""
        try:
            self.driver.fire(
                handle.category, handle.at, connection, self.dialect, self.original_commit
            )
        except BaseException:
            if handle.at == "commit":
                # A failed COMMIT ends the transaction, and SQLAlchemy relies on it: it
                # returns the connection to the pool without a rollback.
                with contextlib.suppress(Exception):
                    self.dialect.do_rollback(connection)
            raise
        msg = (
            f"txpolicy could not make {self.dialect.name}+{self.dialect.driver} raise "
            f"{handle.category.name}: the server accepted the statement meant to fail"
        )
        raise RuntimeError(msg)


# --- the public entry point's logic -------------------------------------------------------


def _engine_of(target: object) -> Engine | None:
    """The sync engine behind an engine or connection, sync or async."""
    if isinstance(target, Engine):
        return target
    if isinstance(target, Connection):
        return target.engine
    sync_engine = getattr(target, "sync_engine", None)  # AsyncEngine, AsyncConnection
    return sync_engine if isinstance(sync_engine, Engine) else None


def engines_of(bind: object) -> list[Engine]:
    """Every sync engine a fault on *bind* must reach, or ``TypeError``/``ValueError``."""
    engine = _engine_of(bind)
    if engine is not None:
        return [engine]
    targets: Iterable[object]
    provider = getattr(type(bind), "_txpolicy_engines_", None)
    if provider is not None:
        provided = provider(bind)
        targets = provided.values() if isinstance(provided, Mapping) else provided
    elif isinstance(bind, _BaseDatabase):
        # Until Database exposes _txpolicy_engines_(): its name -> engine mapping.
        targets = getattr(bind, "_engines", {}).values()
    elif isinstance(bind, sessionmaker) or _is_async_sessionmaker(bind):
        kw: Mapping[str, Any] = getattr(bind, "kw", {})
        targets = [kw.get("bind"), *(kw.get("binds") or {}).values()]
    else:
        msg = (
            "inject_fault() needs an Engine, AsyncEngine, sessionmaker, async_sessionmaker, "
            f"Database or AsyncDatabase, not {type(bind).__name__}"
        )
        raise TypeError(msg)
    engines = [e for e in map(_engine_of, targets) if e is not None]
    if not engines:
        msg = f"inject_fault() found no engine behind {bind!r}: give the sessionmaker a bind"
        raise ValueError(msg)
    return engines


def _is_async_sessionmaker(bind: object) -> bool:
    """Whether *bind* is an ``async_sessionmaker``, without importing the asyncio extension."""
    module = sys.modules.get("sqlalchemy.ext.asyncio")
    return module is not None and isinstance(bind, module.async_sessionmaker)


def check_category(category: object) -> ErrorCategory:
    """*category* as an :class:`ErrorCategory` (its string value is accepted too)."""
    if isinstance(category, ErrorCategory):
        return category
    if isinstance(category, str):
        try:
            return ErrorCategory(category)
        except ValueError:
            pass
        names = ", ".join(c.value for c in ErrorCategory)
        msg = f"unknown error category {category!r}; use an ErrorCategory ({names})"
        raise ValueError(msg)
    msg = f"category must be an ErrorCategory, not {type(category).__name__}"
    raise TypeError(msg)


def inject(bind: object, category: object, at: object, times: object) -> FaultHandle:
    """Validate everything, then register one handle on every dialect behind *bind*."""
    category = check_category(category)
    if not isinstance(at, str):
        msg = f"at must be 'statement' or 'commit', not {type(at).__name__}"
        raise TypeError(msg)
    if at not in _AT_VALUES:
        msg = f"at must be 'statement' or 'commit', not {at!r}"
        raise ValueError(msg)
    if not isinstance(times, int) or isinstance(times, bool):
        msg = f"times must be an int, not {type(times).__name__}"
        raise TypeError(msg)
    if times < 1:
        msg = f"times must be at least 1, not {times}"
        raise ValueError(msg)
    dialects = list({id(e.dialect): e.dialect for e in engines_of(bind)}.values())
    with _INSTALL_LOCK:
        hooks = tuple(_Hooks.of(dialect) for dialect in dialects)
    for hook in hooks:
        if category not in hook.driver.supported():
            supported = ", ".join(c.value for c in ErrorCategory if c in hook.driver.supported())
            msg = (
                f"{hook.driver.title} ({hook.dialect.driver}) cannot produce "
                f"{category.value!r} errors; it can produce {supported}"
            )
            if category is C.COMMIT_UNKNOWN:
                msg += " (inject 'connection' at='commit' to lose the connection during COMMIT)"
            raise ValueError(msg)
    handle = FaultHandle(category, cast("At", at), times, hooks)
    for hook in hooks:
        hook.add(handle)
    return handle
