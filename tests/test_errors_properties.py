"""
Properties of ``classify_error`` that hold whatever it is given (hypothesis).

It never raises, never mutates its input, is idempotent, sets no ``__cause__`` on what it
builds, and lets control-flow exceptions through untouched, for: driver exceptions with
arbitrary arguments, exceptions of classes from unknown modules (or posing as a driver's),
cyclic and deep cause/context chains, a ``__str__`` or attribute that raises, non-string and
huge messages.
"""

from __future__ import annotations

import asyncio
import copy
import sqlite3

import psycopg
import psycopg.errors
import pymysql.err
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from txpolicy import ErrorCategory, TransactionError, classify_error, is_retryable_error
from txpolicy._errors import classify_error_during_commit
from txpolicy._exceptions import CATEGORY_CLASSES

SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

MODULES = [
    "builtins",
    "myapp.errors",
    "psycopg",
    "psycopg.errors",
    "psycopg2.errors",
    "asyncpg.exceptions",
    "pymysql.err",
    "MySQLdb._exceptions",
    "sqlite3",
    "pyodbc",
    "pymssql.exceptions",
    "oracledb.exceptions",
    "cx_Oracle",
    "sqlalchemy.exc",
    "sqlalchemy.dialects.postgresql.asyncpg",
    "",
]
BASES: list[type[BaseException]] = [
    Exception,
    ValueError,
    OSError,
    ConnectionResetError,
    TimeoutError,
    psycopg.OperationalError,
    psycopg.errors.DeadlockDetected,
    pymysql.err.OperationalError,
    pymysql.err.InterfaceError,
    sqlite3.OperationalError,
    sa.exc.OperationalError,
    sa.exc.DBAPIError,
    sa.exc.SQLAlchemyError,
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=50),
    st.binary(max_size=20),
    st.sampled_from(["40P01", "57P01", "23505", 1213, 2013, 517, 5, "ORA-00060", "(1205)"]),
)
arguments = st.lists(
    st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=3), scalars)),
    max_size=4,
)


class Boom(Exception):
    """Raised by the hostile attributes below."""


def hostile_class(base: type[BaseException], module: str, raising: frozenset[str]) -> type:
    """A subclass of *base* that pretends to live in *module* and whose chosen members raise."""
    namespace: dict[str, object] = {"__module__": module}

    def fail(self: object, *args: object) -> str:
        raise Boom("hostile")

    if "str" in raising:
        namespace["__str__"] = fail
    if "repr" in raising:
        namespace["__repr__"] = fail
    for attribute in ("sqlstate", "pgcode", "sqlite_errorcode", "orig", "errno"):
        if attribute in raising:
            namespace[attribute] = property(fail)
    return type(f"Hostile{base.__name__}", (base,), namespace)


@st.composite
def exceptions(draw: st.DrawFn) -> BaseException:
    """One exception: a real driver class or a hostile subclass, with arbitrary arguments."""
    base = draw(st.sampled_from(BASES))
    raising = frozenset(
        draw(st.sets(st.sampled_from(["str", "repr", "sqlstate", "pgcode",
                                      "sqlite_errorcode", "orig", "errno"])))  # fmt: skip
    )
    module = draw(st.sampled_from(MODULES))
    if draw(st.booleans()):
        klass: type[BaseException] = hostile_class(base, module, raising)
    else:
        klass, raising = base, frozenset()
    args = draw(arguments)
    if issubclass(klass, sa.exc.DBAPIError):
        orig = draw(st.one_of(st.none(), st.builds(lambda a: psycopg.errors.lookup("40P01")(*a),
                                                   arguments)))  # fmt: skip
        try:
            error = klass("SELECT 1", {}, orig, connection_invalidated=draw(st.booleans()))
        except (Boom, AttributeError):  # a hostile ``orig`` property refuses the constructor
            error = klass.__new__(klass)
        return error
    try:
        error = klass(*args)
    except Exception:
        error = klass.__new__(klass)
    if isinstance(error, sqlite3.Error) and "sqlite_errorcode" not in raising and draw(st.booleans()):
        error.sqlite_errorcode = draw(scalars)
    if draw(st.booleans()):
        error.__dict__["extra"] = draw(scalars)
    return error


@st.composite
def chained(draw: st.DrawFn) -> BaseException:
    """Exceptions linked by ``__cause__`` / ``__context__``, possibly in a cycle."""
    links = draw(st.lists(exceptions(), min_size=1, max_size=12))
    for index, link in enumerate(links):
        target = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=len(links) - 1)))
        if target is None:
            continue
        if draw(st.booleans()):
            link.__cause__ = links[target]
        else:
            link.__context__ = links[target]
            link.__suppress_context__ = draw(st.booleans())
    return links[draw(st.integers(min_value=0, max_value=len(links) - 1))]


def snapshot(error: BaseException) -> tuple[object, ...]:
    """Everything classification could conceivably change on *error*."""
    return (
        type(error),
        error.args,
        copy.copy(error.__dict__) if hasattr(error, "__dict__") else None,
        error.__cause__,
        error.__context__,
        error.__suppress_context__,
        error.__traceback__,
        getattr(error, "__notes__", None),
    )


def chain_members(error: BaseException) -> list[BaseException]:
    """*error* and every exception reachable through its links (each once)."""
    seen: dict[int, BaseException] = {}
    todo = [error]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen[id(current)] = current
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        orig = current.__dict__.get("orig") if hasattr(current, "__dict__") else None
        if isinstance(orig, BaseException):
            todo.append(orig)
    return list(seen.values())


@SETTINGS
@given(chained())
def test_never_raises_never_mutates(error: BaseException) -> None:
    """Whatever the chain, classification returns, and leaves every member as it was."""
    members = chain_members(error)
    before = [snapshot(member) for member in members]

    result = classify_error(error)
    classify_error_during_commit(error)
    is_retryable_error(error, during_commit=True, idempotent=True)

    assert before == [snapshot(member) for member in members]
    assert isinstance(result, BaseException)


@SETTINGS
@given(chained())
def test_result_is_the_input_or_a_well_formed_classified_error(error: BaseException) -> None:
    """A result is the input itself, or a fresh classified error that is its own fixed point."""
    result = classify_error(error)

    if result is error:
        return
    assert isinstance(result, TransactionError)
    assert CATEGORY_CLASSES[result.category] is type(result)
    assert isinstance(result.category, ErrorCategory)
    assert isinstance(result.original, BaseException)
    assert isinstance(result.message, str)
    assert None is result.__cause__
    assert None is result.__context__
    assert result is classify_error(result)
    assert isinstance(is_retryable_error(result), bool)


@SETTINGS
@given(st.text(min_size=0, max_size=20), st.integers(min_value=0, max_value=2_000_000))
def test_huge_messages(prefix: str, size: int) -> None:
    """A message of megabytes is classified (by its code) without trouble."""
    message = prefix + "x" * size
    error = pymysql.err.OperationalError(1213, message)

    classified = classify_error(error)

    assert ErrorCategory.DEADLOCK == classified.category
    assert message == str(classified)


@SETTINGS
@given(st.sampled_from([KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError]),
       arguments)  # fmt: skip
def test_control_flow_exceptions_pass_through(
    klass: type[BaseException], args: list[object]
) -> None:
    """KeyboardInterrupt, SystemExit, GeneratorExit and CancelledError come back untouched."""
    error = klass(*args)
    before = snapshot(error)

    assert error is classify_error(error)
    assert False is is_retryable_error(error)
    assert before == snapshot(error)


@SETTINGS
@given(st.sampled_from(MODULES[1:2] + ["", "unknown.driver", "myapp"]), arguments)
def test_exceptions_from_unknown_modules_pass_through(module: str, args: list[object]) -> None:
    """An exception from a module that is no driver is not a database error."""
    klass = type("AppError", (Exception,), {"__module__": module, "sqlstate": "40P01"})
    error = klass(*args)

    assert error is classify_error(error)


def test_str_that_raises_still_classifies() -> None:
    """A driver error whose ``__str__`` raises is still classified, by its code, message ""."""

    def fail(self: object) -> str:
        raise Boom("no text for you")

    klass = type("Deadlock", (psycopg.errors.DeadlockDetected,), {"__str__": fail})
    error = klass()

    classified = classify_error(error)

    assert ErrorCategory.DEADLOCK == classified.category
    assert "" == str(classified)
    assert error is classified.original


def test_non_string_arguments_still_classify() -> None:
    """PyMySQL-shaped args with a non-string message: the errno decides, the message is text."""
    error = pymysql.err.OperationalError(1205, b"bytes, not text", 42)

    classified = classify_error(error)

    assert ErrorCategory.LOCK_TIMEOUT == classified.category
    assert isinstance(classified.message, str)
