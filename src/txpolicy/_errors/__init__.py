"""
Error classification: what a database error means for the transaction that met it.

The tables are data, one module per database (``_postgres``, ``_cockroach``, ``_mysql``,
``_sqlite``, ``_mssql``, ``_oracle``, and ``_messages`` for errors without a code);
``_unwrap`` finds the driver exception behind an error and reads its code; this module
is the one dispatcher. The order of evidence is: SQLSTATE / vendor code, then the codes
in the exception's cause chain, then SQLAlchemy's ``connection_invalidated``, then the
message, then the DB-API class the driver chose.

What is learnt about an exception *type* is cached per type, never per object, so a
coded error costs a few dict lookups plus building the result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy.exc as _sa_exc

from .._exceptions import (
    CATEGORY_CLASSES,
    DEFAULT_RETRY_ON,
    ErrorCategory,
    TransactionError,
)
from . import _cockroach, _mysql, _oracle, _postgres, _sqlite, _unwrap
from ._tables import CodeInfo, describe_code, fallback_rows, table_rows

__all__ = [
    "CodeInfo",
    "classify_error",
    "classify_error_during_commit",
    "describe_code",
    "fallback_rows",
    "is_retryable_error",
    "mark_during_commit",
    "table_rows",
]

_C = ErrorCategory
_Handler = Callable[[Any], BaseException]
_EMULATED_CODES = _unwrap.emulated_codes


def classify_error(error: BaseException) -> BaseException:  # noqa: PLR0915 - inlined for speed
    """
    Classify a database error into a :class:`~txpolicy.TransactionError` subclass.

    Args:
        error: Any exception: a driver's, SQLAlchemy's wrapper of one, or anything else.

    Returns:
        A new instance of the class of the error's :class:`~txpolicy.ErrorCategory`, carrying
        ``category``, ``sqlstate``, ``vendor_code``, ``dialect``, ``original`` (the innermost
        driver exception) and the driver's message; or *error* itself, unchanged, when it is
        not a database error (or is already classified). The result has no ``__cause__``:
        raise it ``from`` the caught error. Never raises, never mutates *error*.

    .. versionadded:: 0.1.0
    """
    # The coded path is written out inline: every function call saved here is a
    # measurable share of the sub-microsecond budget (benchmarks/test_bench_classify.py).
    try:
        plan = _PLANS.get(type(error)) or _plan_for(type(error))
        kind = plan[0]
        original: Any = error
        if kind is _WRAPPER:  # SQLAlchemy's DBAPIError: classify the driver's error
            original = getattr(error, "orig", None)
            plan = _PLANS.get(type(original)) or _plan_for(type(original))
            kind = plan[0]
            if original is error or (kind is not _FAST and kind is not _DRIVER):
                return _from_dbapi_error(error)
        if plan[1] is _EMULATED_CODES:  # SQLAlchemy's emulated DB-API error (asyncpg adapter)
            inner = getattr(original, "orig", None)  # SQLAlchemy 2.1; 2.0 chains it instead
            if not isinstance(inner, BaseException):
                inner = original.__cause__
            inner_plan = _PLANS.get(type(inner)) or _plan_for(type(inner))
            if inner is not original and inner_plan[0] is _FAST:
                original, plan, kind = inner, inner_plan, _FAST
        if kind is _FAST:  # a driver class whose code and message sit in known places
            code_attribute, message_at, prepared, sqlstate_per_object = plan[3]
            if code_attribute is None:
                args = original.args
                code = args[0] if args else None
            else:
                code = getattr(original, code_attribute, None)
            ready = prepared.get(code) if type(code) is str or type(code) is int else None
            if ready is not None:
                message: Any
                if message_at < 0:
                    message = str(original)
                else:
                    args = original.args
                    message = args[message_at] if len(args) > message_at else None
                cls, os_like, template, marker = ready
                if type(message) is str and (marker is None or marker not in message):
                    result = cls.__new__(cls, message)
                    if os_like:
                        result.args = (message,)
                    state = template.copy()
                    state["original"] = original
                    if sqlstate_per_object:
                        sqlstate = getattr(original, "sqlstate", None)
                        state["sqlstate"] = sqlstate if type(sqlstate) is str else None
                    result.__dict__ = state
                    return result  # type: ignore[no-any-return]
            verdict = plan[1](original)
        elif kind is _DRIVER:
            verdict = plan[1](original)
        elif kind is _SAME:
            return error
        else:
            return plan[1](error)  # type: ignore[no-any-return]
        category = verdict[0]
        if category is None:
            invalidated = getattr(error, "connection_invalidated", False) is True
            return _finish(verdict, plan[2], invalidated=invalidated)
        cls, os_like, template = _BUILD[category]
        message = verdict[5]
        result = cls.__new__(cls, message)
        if os_like:
            result.args = (message,)
        state = template.copy()
        state["sqlstate"] = verdict[1]
        state["vendor_code"] = verdict[2]
        state["dialect"] = verdict[3]
        state["original"] = verdict[4]
        result.__dict__ = state
    except Exception:
        # A pathological exception (an attribute or __str__ that raises in a way not
        # anticipated) must not turn error handling itself into a new failure.
        return error
    return result


def is_retryable_error(
    error: BaseException, *, during_commit: bool = False, idempotent: bool = False
) -> bool:
    """
    Whether the table's default policy retries *error*.

    Args:
        error: A raw, SQLAlchemy-wrapped or already classified error.
        during_commit: The error was raised by COMMIT: a connection failure then means
            the outcome is unknown (COMMIT_UNKNOWN). A deadlock or serialization failure
            raised by COMMIT is a definite rollback and stays retryable, and so is a
            connection the server ended while the session was idle (PostgreSQL 25P03).
        idempotent: Running the transaction twice is harmless, so an unknown commit
            outcome may be retried.

    Returns:
        The verdict of the table in the contract (§2); ``False`` for anything that is not
        a database error.

    .. versionadded:: 0.1.0
    """
    classified = classify_error(error)
    if not isinstance(classified, TransactionError):
        return False
    category = classified.category
    if category is _C.CONNECTION and during_commit and not _ended_while_idle(classified):
        category = _C.COMMIT_UNKNOWN
    if category is _C.COMMIT_UNKNOWN:
        return idempotent
    return category in DEFAULT_RETRY_ON


def classify_error_during_commit(error: BaseException) -> BaseException:
    """
    Classify an error raised by COMMIT (private API for the transaction shell).

    Like :func:`classify_error`, then :func:`mark_during_commit`: a connection failure
    becomes a ``CommitUnknownError``; every classified result has ``during_commit=True``.
    """
    return mark_during_commit(classify_error(error))


def mark_during_commit(classified: BaseException) -> BaseException:
    """
    A copy of *classified* that records it was raised by COMMIT.

    A CONNECTION error becomes a ``CommitUnknownError`` (the commit may have happened),
    except a connection the server ended while the session was idle (PostgreSQL 25P03 and
    57P05, MySQL 4031, ORA-02396): that happened before COMMIT arrived. Other categories
    keep their class (a deadlock at COMMIT is a definite rollback). Anything that is not a
    :class:`~txpolicy.TransactionError`, or is already marked, is returned unchanged. The
    input is never mutated.
    """
    if not isinstance(classified, TransactionError) or classified.during_commit:
        return classified
    category = classified.category
    if category is _C.CONNECTION and not _ended_while_idle(classified):
        category = _C.COMMIT_UNKNOWN
    verdict = (
        category,
        classified.sqlstate,
        classified.vendor_code,
        classified.dialect,
        classified.original,
        classified.message,
    )
    result = _make(category, verdict)
    result.during_commit = True
    result.attempts = classified.attempts
    return result


def _ended_while_idle(classified: TransactionError) -> bool:
    """A connection the server ended while it waited for the client: COMMIT never ran."""
    dialect = classified.dialect
    if dialect in ("postgresql", "cockroachdb"):
        return classified.sqlstate in _postgres.ENDED_WHILE_IDLE
    if dialect == "mysql":
        return classified.vendor_code in _mysql.ENDED_WHILE_IDLE
    if dialect == "oracle":
        return classified.vendor_code in _oracle.ENDED_WHILE_IDLE
    return False


# -- building the result -----------------------------------------------------------------


def _make(category: ErrorCategory, verdict: _unwrap.Verdict) -> TransactionError:
    """
    Build a classified error without running ``TransactionError.__init__``.

    Keyword-argument parsing in ``__init__`` costs about as much as the whole rest of the
    classification; the attributes set here are exactly the ones ``__init__`` sets (a test
    compares the two).
    """
    cls, os_like, template = _BUILD[category]
    message = verdict[5]
    result: TransactionError = cls.__new__(cls, message)
    if os_like:
        # OSError.__new__ leaves args to __init__ when a subclass defines its own.
        result.args = (message,)
    state = template.copy()
    state["sqlstate"] = verdict[1]
    state["vendor_code"] = verdict[2]
    state["dialect"] = verdict[3]
    state["original"] = verdict[4]
    result.__dict__ = state
    return result


def _template(category: ErrorCategory, **values: object) -> dict[str, object]:
    """The instance ``__dict__`` of a classified error, to be copied (faster than building)."""
    state: dict[str, object] = {
        "category": category,
        "sqlstate": None,
        "vendor_code": None,
        "dialect": None,
        "original": None,
        "during_commit": False,
        "attempts": 1,
    }
    state.update(values)
    return state


_BUILD: dict[ErrorCategory, tuple[type[TransactionError], bool, dict[str, object]]] = {
    category: (cls, issubclass(cls, OSError), _template(category))
    for category, cls in CATEGORY_CLASSES.items()
}
"""Per category: its class, whether that is an OSError (``args`` need setting), its state."""


def _finish(
    verdict: _unwrap.Verdict, default: ErrorCategory, *, invalidated: bool = False
) -> BaseException:
    """Complete a verdict that may lack a category, then build the result."""
    category = verdict[0]
    if category is None:
        chained = _unwrap.coded_in_chain(verdict[4])
        if chained is not None:
            verdict = chained
            category = chained[0]
        elif invalidated:
            category = _C.CONNECTION
        else:
            category = _unwrap.message_category(verdict[3], verdict[5]) or default
    assert category is not None
    return _make(category, verdict)


# -- handlers, one per exception type ----------------------------------------------------


def _from_dbapi_error(error: Any) -> BaseException:
    """SQLAlchemy's ``DBAPIError`` family: classify ``.orig``, mind ``connection_invalidated``."""
    orig = getattr(error, "orig", None)
    invalidated = getattr(error, "connection_invalidated", False) is True
    if isinstance(orig, BaseException) and orig is not error:
        if isinstance(orig, TransactionError):
            return orig
        entry = _unwrap.entry_for(type(orig))
        if entry is None:
            entry = (_unwrap.generic_codes, _unwrap.class_default(type(orig), ""))
        verdict = entry[0](orig)
        if verdict[0] is None:
            return _finish(verdict, entry[1], invalidated=invalidated)
        category = verdict[0]
        return _make(category, verdict)
    verdict = (None, None, None, None, error, _unwrap.text(error))
    return _finish(verdict, _C.UNKNOWN, invalidated=invalidated)


def _fixed(category: ErrorCategory) -> _Handler:
    """The handler for SQLAlchemy errors whose type alone says what they mean."""

    def handle(error: BaseException) -> BaseException:
        return _make(category, (category, None, None, None, error, _unwrap.text(error)))

    return handle


def _from_sqlalchemy_other(error: BaseException) -> BaseException:
    """Other SQLAlchemy errors: a database error only if one sits behind them."""
    orig = getattr(error, "orig", None)  # StatementError wraps non-DB-API exceptions too
    if isinstance(orig, BaseException) and orig is not error:
        classified = classify_error(orig)
        if classified is not orig:
            return classified
    chained = _unwrap.coded_in_chain(error)
    if chained is None:
        return error
    return _finish(chained, _C.UNKNOWN)


def _from_os_error(error: BaseException) -> BaseException:
    """A built-in I/O error counts only when raised from inside a driver or SQLAlchemy."""
    found, dialect = _unwrap.driver_frame_dialect(error.__traceback__)
    if not found:
        return error
    return _make(_C.CONNECTION, (_C.CONNECTION, None, None, dialect, error, _unwrap.text(error)))


# What to do with an exception type, learnt once per type: (kind, function, default[, static]).
# _DRIVER: function reads the codes of a driver exception, default is its class's category;
# _FAST: the same, for a class whose code and message sit in known places (psycopg, asyncpg,
#   PyMySQL, mysqlclient, sqlite3): the result's state is prepared per code, once, and only
#   copied per call; anything unexpected falls back on the function;
# _WRAPPER: SQLAlchemy's DBAPIError, whose ``orig`` is read the same way;
# _HANDLER: function classifies the whole error; _SAME: returned unchanged.
_SAME = "same"
_DRIVER = "driver"
_FAST = "fast"
_WRAPPER = "wrapper"
_HANDLER = "handler"
_Plan = tuple[Any, ...]
_PLANS: dict[type, _Plan] = {}
_MAX_PLANS = 4096  # dynamically created classes must not grow the cache forever


def _plan_for(klass: type) -> _Plan:
    """Work out and cache what to do with exceptions of *klass*."""
    plan = _choose_plan(klass)
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    _PLANS[klass] = plan
    return plan


def _choose_plan(klass: type) -> _Plan:
    unknown = _C.UNKNOWN
    if (
        not issubclass(klass, Exception)  # KeyboardInterrupt, CancelledError, non-exceptions
        or issubclass(klass, TransactionError)
    ):
        return (_SAME, None, unknown)
    if issubclass(klass, _sa_exc.DBAPIError):
        return (_WRAPPER, None, unknown)
    if issubclass(klass, _sa_exc.TimeoutError):  # pool checkout timed out
        return (_HANDLER, _fixed(_C.RESOURCE), unknown)
    if issubclass(klass, _sa_exc.DisconnectionError):
        return (_HANDLER, _fixed(_C.CONNECTION), unknown)
    if issubclass(klass, _sa_exc.PendingRollbackError):  # an earlier error was swallowed
        return (_HANDLER, _fixed(_C.UNKNOWN), unknown)
    if issubclass(klass, _sa_exc.SQLAlchemyError):
        return (_HANDLER, _from_sqlalchemy_other, unknown)
    entry = _unwrap.entry_for(klass)
    if entry is not None:
        fast = _fast(klass, entry[0])
        if fast is not None:
            return (_FAST, entry[0], entry[1], fast)
        return (_DRIVER, entry[0], entry[1])
    if _unwrap.is_os_level(klass):
        return (_HANDLER, _from_os_error, unknown)
    return (_SAME, None, unknown)


def _prepared(
    table: dict[Any, ErrorCategory],
    dialect: str,
    code_field: str,
    markers: dict[str, str] | None = None,
) -> dict[Any, tuple[Any, ...]]:
    """
    Per code of *table*: ``(class, os_like, state, marker)`` for the fast path.

    A message containing *marker* leaves the fast path (CockroachDB's wording of a code it
    shares with PostgreSQL names another dialect, and maybe another category).
    """
    prepared = {}
    for code, category in table.items():
        cls, os_like, _ = _BUILD[category]
        state = _template(category, dialect=dialect, **{code_field: code})
        prepared[code] = (cls, os_like, state, (markers or {}).get(code))
    return prepared


_PREPARED_POSTGRES = _prepared(
    _postgres.SQLSTATES, "postgresql", "sqlstate", markers=_cockroach.MARKERS
)
_PREPARED_MYSQL = _prepared(_mysql.ERRNOS, "mysql", "vendor_code")
_PREPARED_SQLITE = _prepared(_sqlite.CODES, "sqlite", "vendor_code")


def _fast(klass: type, codes: Any) -> tuple[Any, ...] | None:
    """
    Where *klass* keeps its code and message, for the fast path; None if it does not qualify.

    ``(code_attribute or None for args[0], message index in args or -1 for str(), prepared,
    sqlstate_per_object)``. ``str()`` is used only where the class keeps
    ``BaseException.__str__`` (nothing of its own can raise or run slowly).
    """
    plain_str = klass.__str__ is BaseException.__str__  # type: ignore[comparison-overlap]
    if codes is _unwrap.psycopg_codes and plain_str:
        return ("sqlstate", -1, _PREPARED_POSTGRES, False)
    if codes is _unwrap.asyncpg_codes:
        return ("sqlstate", 0, _PREPARED_POSTGRES, False)
    if codes is _unwrap.mysql_codes and _unwrap.module_root(klass) in ("pymysql", "MySQLdb"):
        return (None, 1, _PREPARED_MYSQL, True)
    if codes is _unwrap.sqlite_codes and plain_str:
        return ("sqlite_errorcode", -1, _PREPARED_SQLITE, False)
    return None
