"""
Find the driver exception behind an error and read its code.

Everything here works from an exception's *type* (its module and MRO) and attributes;
no driver is ever imported, since they are all optional. What is learnt about a type is
cached per type (never per object), which keeps the coded path to a few dict lookups.

The result of reading an exception is a :data:`Verdict`, a plain tuple
``(category, sqlstate, vendor_code, dialect, original, message)``; ``category`` is
``None`` when the exception carries no code that the tables know, and the caller then
falls back, in this order, on the exception's cause chain, SQLAlchemy's
``connection_invalidated``, the message, and the driver's DB-API class.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy.exc as _sa_exc

from .._exceptions import ErrorCategory as C
from .._exceptions import TransactionError
from . import _cockroach, _messages, _mssql, _mysql, _oracle, _postgres, _sqlite

if TYPE_CHECKING:
    from types import TracebackType

Verdict = tuple[C | None, str | None, int | str | None, str | None, BaseException, str]
Codes = Callable[[Any], Verdict]

MAX_DEPTH = 8
"""How many ``__cause__`` / ``__context__`` links are followed at most."""

_COCKROACH_CHECK = frozenset(_cockroach.SQLSTATES)
_PG_GET = _postgres.SQLSTATES.get
_MYSQL_GET = _mysql.ERRNOS.get


def text(exc: BaseException) -> str:
    """``str(exc)``, or ``""`` when its ``__str__`` raises or returns something odd."""
    try:
        message = str(exc)
    except Exception:
        return ""
    return message if type(message) is str else ""


def _first_arg_text(exc: BaseException) -> str:
    """The first argument when it is a string (asyncpg, psycopg), else ``str(exc)``."""
    args = exc.args
    if args and type(args[0]) is str and len(args) == 1:
        return args[0]
    return text(exc)


# -- PostgreSQL family -------------------------------------------------------------------


def _postgres_verdict(code: Any, exc: BaseException, message: str) -> Verdict:
    """Look *code* up for an error that came over the PostgreSQL protocol."""
    if type(code) is not str or not code:
        return (None, None, None, "postgresql", exc, message)
    if code in _COCKROACH_CHECK and _cockroach.is_cockroach(code, message):
        return (_cockroach.SQLSTATES[code], code, None, "cockroachdb", exc, message)
    return (_postgres.category(code), code, None, "postgresql", exc, message)


def psycopg_codes(exc: Any) -> Verdict:
    """Read psycopg 3's ``sqlstate`` (a class attribute for known codes, else from ``diag``)."""
    code = getattr(exc, "sqlstate", None)
    try:
        message = str(exc)
    except Exception:
        message = ""
    # The common case inline; _postgres_verdict handles the rest.
    category = _PG_GET(code) if type(code) is str else None
    if category is None or code in _COCKROACH_CHECK:
        return _postgres_verdict(code, exc, message)
    return (category, code, None, "postgresql", exc, message)


def psycopg2_codes(exc: Any) -> Verdict:
    """Read psycopg2's ``pgcode``."""
    return _postgres_verdict(getattr(exc, "pgcode", None), exc, text(exc))


def asyncpg_codes(exc: Any) -> Verdict:
    """Read asyncpg's ``sqlstate`` class attribute (``PostgresError`` subclasses)."""
    code = getattr(exc, "sqlstate", None)
    message = _first_arg_text(exc)
    category = _PG_GET(code) if type(code) is str else None
    if category is None or code in _COCKROACH_CHECK:
        return _postgres_verdict(code, exc, message)
    return (category, code, None, "postgresql", exc, message)


def pg8000_codes(exc: Any) -> Verdict:
    """pg8000: ``args[0]`` is the server's field dict, ``"C"`` the SQLSTATE."""
    fields = exc.args[0] if exc.args else None
    if isinstance(fields, dict):
        message = fields.get("M")
        return _postgres_verdict(
            fields.get("C"), exc, message if type(message) is str else text(exc)
        )
    return _postgres_verdict(None, exc, text(exc))


def pool_codes(exc: Any) -> Verdict:
    """psycopg_pool: a checkout that timed out or was refused is a resource shortage."""
    names = {klass.__name__ for klass in type(exc).__mro__}
    category = C.RESOURCE if names & {"PoolTimeout", "TooManyRequests"} else None
    return (category, None, None, "postgresql", exc, text(exc))


def emulated_codes(exc: Any) -> Verdict:
    """SQLAlchemy's emulated DB-API errors (the asyncpg adapter): read the driver's error."""
    inner = getattr(exc, "orig", None)
    if not isinstance(inner, BaseException):
        inner = exc.__cause__
    if isinstance(inner, BaseException) and inner is not exc:
        entry = entry_for(type(inner))
        if entry is not None and entry[0] is not emulated_codes:
            return entry[0](inner)  # the driver's own error is the original
    dialect = _dialect_of_module(type(exc).__module__)
    code = getattr(exc, "sqlstate", None)
    if dialect == "postgresql":
        return _postgres_verdict(code, exc, _first_arg_text(exc))
    return (None, None, None, dialect, exc, _first_arg_text(exc))


# -- MySQL / MariaDB ---------------------------------------------------------------------


def mysql_codes(exc: Any) -> Verdict:
    """PyMySQL, mysqlclient, asyncmy: ``args == (errno, message)``; connectors: ``.errno``."""
    args = exc.args
    errno = args[0] if args else None
    if type(errno) is not int:
        errno = getattr(exc, "errno", None)  # MySQL Connector/Python, mariadb
    message = args[1] if len(args) > 1 and type(args[1]) is str else text(exc)
    sqlstate = getattr(exc, "sqlstate", None)
    if type(sqlstate) is not str:
        sqlstate = None
    if type(errno) is not int or errno == 0:
        return (None, sqlstate, None, "mysql", exc, message)
    category = _MYSQL_GET(errno)
    if category is None:
        category = _mysql.category(errno, sqlstate)
    return (category, sqlstate, errno, "mysql", exc, message)


# -- SQLite ------------------------------------------------------------------------------


def sqlite_codes(exc: Any) -> Verdict:
    """Read sqlite3's ``sqlite_errorcode`` (Python 3.11+; aiosqlite raises sqlite3's errors)."""
    code = getattr(exc, "sqlite_errorcode", None)
    try:
        message = str(exc)
    except Exception:
        message = ""
    if type(code) is not int:
        return (None, None, None, "sqlite", exc, message)
    return (_sqlite.category(code), None, code, "sqlite", exc, message)


# -- SQL Server --------------------------------------------------------------------------


def pyodbc_codes(exc: Any) -> Verdict:
    """pyodbc: ``args == (odbc_sqlstate, message)``, the native number as ``(1205)``."""
    args = exc.args
    first = args[0] if args else None
    second = args[1] if len(args) > 1 else None
    if type(second) is str and type(first) is str and len(second) == 5 and len(first) != 5:
        first, second = second, first  # pyodbc's own errors: (message, sqlstate)
    sqlstate = first if type(first) is str and len(first) == 5 else None
    message = second if type(second) is str else text(exc)
    numbers = _mssql.native_numbers(message)
    for number in numbers:
        found = _mssql.NUMBERS.get(number)
        if found is not None:
            return (found, sqlstate, number, "mssql", exc, message)
    vendor = next((number for number in numbers if number), None)  # 0: no native error
    return (_mssql.category(None, sqlstate), sqlstate, vendor, "mssql", exc, message)


def pymssql_codes(exc: Any) -> Verdict:
    """pymssql: ``args == (number, message)``, the message often as bytes; or ``.number``."""
    args = exc.args
    number = args[0] if args and type(args[0]) is int else getattr(exc, "number", None)
    raw = args[1] if len(args) > 1 else None
    if isinstance(raw, bytes):
        message = raw.decode("utf-8", "replace")
    elif type(raw) is str:
        message = raw
    else:
        message = text(exc)
    if type(number) is not int:
        return (None, None, None, "mssql", exc, message)
    return (_mssql.category(number, None), None, number, "mssql", exc, message)


# -- Oracle ------------------------------------------------------------------------------


def oracle_codes(exc: Any) -> Verdict:
    """python-oracledb and cx_Oracle: ``args[0]`` is an ``_Error`` with ``.code`` et al."""
    info = exc.args[0] if exc.args else None
    code: Any = None
    full_code: Any = None
    recoverable = False
    if type(info) is str:
        message = info
    else:
        code = getattr(info, "code", None)
        full_code = getattr(info, "full_code", None)
        recoverable = getattr(info, "isrecoverable", False) is True
        found = getattr(info, "message", None)
        message = found if type(found) is str else text(exc)
    if type(code) is not int or not code or type(full_code) is not str:
        parsed_code, parsed_full = _oracle.parse_code(message)
        code = code if type(code) is int and code else parsed_code
        full_code = full_code if type(full_code) is str else parsed_full
    category = _oracle.category(code, full_code)
    if category is None and recoverable:
        category = C.CONNECTION
    vendor: int | str | None = code or full_code
    return (category, None, vendor, "oracle", exc, message)


# -- drivers txpolicy has no table for ---------------------------------------------------


def generic_codes(exc: Any) -> Verdict:
    """An error SQLAlchemy calls a DB-API error, from a driver txpolicy does not know."""
    message = text(exc)
    code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if type(code) is str and len(code) == 5:
        return (_postgres.category(code), code, None, None, exc, message)
    return (None, None, None, None, exc, message)


DRIVERS: dict[str, tuple[Codes, str | None]] = {
    "psycopg": (psycopg_codes, "postgresql"),
    "psycopg2": (psycopg2_codes, "postgresql"),
    "psycopg_pool": (pool_codes, "postgresql"),
    "asyncpg": (asyncpg_codes, "postgresql"),
    "pg8000": (pg8000_codes, "postgresql"),
    "pymysql": (mysql_codes, "mysql"),
    "MySQLdb": (mysql_codes, "mysql"),
    "asyncmy": (mysql_codes, "mysql"),
    "mysql": (mysql_codes, "mysql"),
    "mariadb": (mysql_codes, "mysql"),
    "sqlite3": (sqlite_codes, "sqlite"),
    "aiosqlite": (sqlite_codes, "sqlite"),
    "pyodbc": (pyodbc_codes, "mssql"),
    "pymssql": (pymssql_codes, "mssql"),
    "_mssql": (pymssql_codes, "mssql"),
    "oracledb": (oracle_codes, "oracle"),
    "cx_Oracle": (oracle_codes, "oracle"),
}
"""Top-level module of a driver's exceptions -> (code reader, dialect)."""

_CONNECTION_CLASSES = {
    # Raised without a code only when the client lost or could not open the connection.
    "psycopg": ("OperationalError", "InterfaceError"),
    "psycopg2": ("OperationalError", "InterfaceError"),
    "pymysql": ("InterfaceError",),
    "MySQLdb": ("InterfaceError",),
}

_DBAPI_CLASSES = {
    "IntegrityError": C.INTEGRITY,
    "DataError": C.DATA,
    "ProgrammingError": C.SCHEMA,
    "NotSupportedError": C.SCHEMA,
}

_NOT_CONNECTION = frozenset({"PipelineAborted"})  # psycopg: an earlier pipeline error


def module_root(klass: type) -> str:
    """The top-level package a class was defined in (``""`` when it cannot tell)."""
    module = getattr(klass, "__module__", None)
    return module.partition(".")[0] if type(module) is str else ""


def _dialect_of_module(module: str) -> str | None:
    """``"postgresql"`` for ``sqlalchemy.dialects.postgresql.asyncpg`` and the like."""
    parts = module.split(".")
    if len(parts) > 2 and parts[1] == "dialects":  # sqlalchemy.dialects.<name>
        return parts[2]
    return None


def class_default(klass: type, root: str) -> C:
    """The category a driver's DB-API class implies when nothing more precise is known."""
    names = [k.__name__ for k in klass.__mro__]
    if issubclass(klass, OSError):
        return C.CONNECTION
    connection_names = _CONNECTION_CLASSES.get(root, ())
    if connection_names and not _NOT_CONNECTION.intersection(names):
        for name in names:
            if name in connection_names:
                return C.CONNECTION
    for name in names:
        found = _DBAPI_CLASSES.get(name)
        if found is not None:
            return found
    return C.UNKNOWN


# -- the per-type cache ------------------------------------------------------------------

Entry = tuple[Codes, C]
"""How to read one exception type: its code reader and the category its class implies."""

_ENTRIES: dict[type, Entry | None] = {}
_MAX_CACHED = 4096  # dynamically created classes must not grow the cache forever

_EMULATED = getattr(_sa_exc, "EmulatedDBAPIException", None)  # SQLAlchemy 2.1+


def entry_for(klass: type) -> Entry | None:
    """The reader for exceptions of *klass*, or None when it is no driver's exception."""
    try:
        return _ENTRIES[klass]
    except KeyError:
        pass
    entry = _learn(klass)
    if len(_ENTRIES) >= _MAX_CACHED:
        _ENTRIES.clear()
    _ENTRIES[klass] = entry
    return entry


def _learn(klass: type) -> Entry | None:
    """Work out, once per type, whether and how *klass* carries a database error."""
    if not issubclass(klass, Exception) or issubclass(klass, TransactionError):
        return None
    for base in klass.__mro__:
        root = module_root(base)
        if root == "sqlalchemy" and _is_emulated(base):
            return (emulated_codes, class_default(klass, root))
        driver = DRIVERS.get(root)
        if driver is not None:
            return (driver[0], class_default(klass, root))
    return None


def _is_emulated(klass: type) -> bool:
    """Whether *klass* is one of SQLAlchemy's emulated DB-API exceptions (asyncpg adapter)."""
    if _EMULATED is not None and issubclass(klass, _EMULATED):
        return True
    module = getattr(klass, "__module__", None)
    return (
        type(module) is str
        and module.startswith("sqlalchemy.dialects.")
        and not issubclass(klass, _sa_exc.SQLAlchemyError)
    )


# -- chains and tracebacks ---------------------------------------------------------------


def coded_in_chain(exc: BaseException) -> Verdict | None:
    """The first driver error with a known code among *exc*'s causes and contexts."""
    seen = {id(exc)}
    link = _next_link(exc)
    depth = 0
    while link is not None and depth < MAX_DEPTH and id(link) not in seen:
        seen.add(id(link))
        depth += 1
        inner: BaseException = link
        if isinstance(link, _sa_exc.DBAPIError) and isinstance(link.orig, BaseException):
            inner = link.orig
        entry = entry_for(type(inner))
        if entry is not None:
            verdict = entry[0](inner)
            if verdict[0] is not None:
                return verdict
        elif not _is_sqlalchemy(type(link)):
            return None  # only unwrap through driver and SQLAlchemy exceptions
        link = _next_link(link)
    return None


def _next_link(exc: BaseException) -> BaseException | None:
    cause = exc.__cause__
    if isinstance(cause, BaseException):
        return cause
    context = exc.__context__
    if isinstance(context, BaseException) and not exc.__suppress_context__:
        return context
    return None


def _is_sqlalchemy(klass: type) -> bool:
    return issubclass(klass, _sa_exc.SQLAlchemyError)


_DRIVER_ROOTS = frozenset(DRIVERS) | {"sqlalchemy"}


def driver_frame_dialect(traceback: TracebackType | None) -> tuple[bool, str | None]:
    """Whether *traceback* runs through a driver or SQLAlchemy, and that driver's dialect."""
    found = False
    dialect = None
    depth = 0
    while traceback is not None and depth < 1000:  # a sanity bound
        name = traceback.tb_frame.f_globals.get("__name__")
        root = name.partition(".")[0] if type(name) is str else ""
        if root in _DRIVER_ROOTS:
            found = True
            driver = DRIVERS.get(root)
            if driver is not None:
                dialect = driver[1]
        traceback = traceback.tb_next
        depth += 1
    return found, dialect


def is_os_level(klass: type) -> bool:
    """Whether *klass* is a built-in I/O failure that a driver may let through."""
    return issubclass(klass, OSError) or klass is asyncio.TimeoutError


def message_category(dialect: str | None, message: str) -> C | None:
    """The category the message points at (last resort)."""
    return _messages.category(dialect, message)
