"""
Shared by the ``test_errors_real_*`` files: one provoked case, and what classifying it must give.

A :class:`Case` names a provoker (``tests/provoke.py``), the contract category of the error it
provokes (CONTRACT §2) and, per driver, the :class:`Shape` the driver gives that error. The
checks first assert the shape (facts about the server and driver, independent of txpolicy),
then what ``classify_error`` and ``is_retryable_error`` make of it, raw and under SQLAlchemy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest
import sqlalchemy as sa

import txpolicy
from tests.provoke import STACKS, Provoker, Stack
from txpolicy import ErrorCategory, classify_error, is_retryable_error

RETRIED_BY_DEFAULT = frozenset(
    {
        ErrorCategory.DEADLOCK,
        ErrorCategory.SERIALIZATION,
        ErrorCategory.LOCK_TIMEOUT,
        ErrorCategory.CONNECTION,
        ErrorCategory.READ_ONLY,
        ErrorCategory.RESOURCE,
    }
)
"""The rows of the CONTRACT §2 table whose "retried by default" column says yes."""

CONTRACT_CLASSES: dict[ErrorCategory, type[txpolicy.TransactionError]] = {
    ErrorCategory.DEADLOCK: txpolicy.DeadlockError,
    ErrorCategory.SERIALIZATION: txpolicy.SerializationError,
    ErrorCategory.LOCK_TIMEOUT: txpolicy.LockTimeoutError,
    ErrorCategory.CONNECTION: txpolicy.ConnectionError,
    ErrorCategory.READ_ONLY: txpolicy.ReadOnlyError,
    ErrorCategory.RESOURCE: txpolicy.ResourceError,
    ErrorCategory.STATEMENT_TIMEOUT: txpolicy.TimeoutError,
    ErrorCategory.COMMIT_UNKNOWN: txpolicy.CommitUnknownError,
    ErrorCategory.INTEGRITY: txpolicy.IntegrityError,
    ErrorCategory.DATA: txpolicy.DataError,
    ErrorCategory.PERMISSION: txpolicy.PermissionError,
    ErrorCategory.SCHEMA: txpolicy.SchemaError,
    ErrorCategory.UNKNOWN: txpolicy.UnknownDatabaseError,
}
"""The exception class of each category, by the CONTRACT §2 table."""


@dataclasses.dataclass(frozen=True)
class Shape:
    """
    What the driver raised: its exact class and the code it carries.

    Attributes:
        cls: The exception class the driver raised (behind SQLAlchemy's wrapper, if any).
        code: PostgreSQL: ``sqlstate``; MySQL: the errno (``args[0]``); SQLite: the extended
            ``sqlite_errorcode``. ``None`` when the driver gives none.
        sqlstate: MySQL only: the SQLSTATE the server sent, as PyMySQL reports it.
        message: Text the driver's message contains (tells apart errors that share a code).
        message_code: The code that only the message text carries (psycopg at connect time);
            ``classify_error`` may report it as ``sqlstate`` or leave ``None``.
        chained: The driver raised its own error from the server's (asyncpg's
            ``ConnectionDoesNotExistError`` from ``AdminShutdownError``), so ``original`` may be
            either of the two.
    """

    cls: type[BaseException]
    code: str | int | None
    sqlstate: str | None = None
    message: str | None = None
    message_code: str | None = None
    chained: bool = False


@dataclasses.dataclass(frozen=True)
class Case:
    """One real error: how to provoke it, where, and the category the contract gives it."""

    id: str
    provoker: Provoker
    category: ErrorCategory
    shapes: Mapping[str, Shape]
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    stacks: tuple[str, ...] | None = None
    why_not_elsewhere: str = ""  # when *stacks* leaves some out: the reason, for readers

    def runs_on(self, stack: Stack) -> bool:
        if stack.backend != self.provoker.backend:
            return False
        return self.stacks is None or stack.name in self.stacks

    def shape(self, stack: Stack) -> Shape:
        """The shape on *stack*: by stack name first, then by driver, then the default."""
        for key in (stack.name, stack.driver, "*"):
            if key in self.shapes:
                return self.shapes[key]
        raise KeyError(f"case {self.id} has no shape for {stack.name}")

    def provoke(self, stack: Stack, url: str) -> BaseException:
        return stack.provoke(self.provoker, url, **self.options)


def params(cases: list[Case], backend: str) -> list[Any]:
    """``pytest.param(stack, case, id="<case>-<stack>")`` for every stack each case runs on."""
    return [
        pytest.param(stack, case, id=f"{case.id}-{stack.name}")
        for case in cases
        for stack in STACKS.values()
        if stack.backend == backend and case.runs_on(stack)
    ]


def driver_code(backend: str, raised: BaseException) -> str | int | None:
    """The code a driver exception carries, read the way each driver documents it."""
    if backend == "postgresql":
        return getattr(raised, "sqlstate", None)
    if backend == "mysql":
        return raised.args[0] if raised.args else None
    return getattr(raised, "sqlite_errorcode", None)


def check_shape(case: Case, stack: Stack, error: BaseException) -> BaseException:
    """Assert what the driver raised (no txpolicy involved); return that driver exception."""
    if stack.sqlalchemy:
        assert isinstance(error, sa.exc.DBAPIError), repr(error)
    raised = stack.raised_by_driver(error)
    shape = case.shape(stack)

    assert shape.cls is type(raised), repr(raised)
    assert shape.code == driver_code(stack.backend, raised), repr(raised)
    if stack.backend == "mysql":
        assert shape.sqlstate == raised.sqlstate  # type: ignore[attr-defined]
    if shape.message is not None:
        assert shape.message in str(raised)
    return raised


def check_classified(case: Case, stack: Stack, error: BaseException) -> None:
    """Assert the shape, then everything CONTRACT §2 says ``classify_error`` gives for it."""
    raised = check_shape(case, stack, error)
    shape = case.shape(stack)

    classified = classify_error(error)

    seen = f"{classified!r}, original={getattr(classified, 'original', None)!r}"
    assert case.category == getattr(classified, "category", None), seen
    assert CONTRACT_CLASSES[case.category] is type(classified), seen
    assert stack.backend == classified.dialect, seen
    originals = (raised, raised.__cause__) if shape.chained else (raised,)
    assert any(original is classified.original for original in originals), seen
    if stack.backend == "postgresql":
        expected = driver_code("postgresql", classified.original)
        allowed = {expected} if shape.message_code is None else {None, shape.message_code}
        assert classified.sqlstate in allowed, seen
    elif stack.backend == "mysql":
        assert shape.code == classified.vendor_code, seen
        assert shape.sqlstate == classified.sqlstate, seen
    else:
        assert shape.code == classified.vendor_code, seen
        assert None is classified.sqlstate, seen
    assert classified is classify_error(classified)


def check_verdict(case: Case, error: BaseException) -> None:
    """``is_retryable_error`` gives the table's verdict, raw, wrapped and classified alike."""
    classified = classify_error(error)
    retried = case.category in RETRIED_BY_DEFAULT

    assert retried == is_retryable_error(error), repr(classified)
    assert retried == is_retryable_error(classified), repr(classified)
    assert retried == classified.retryable, repr(classified)  # type: ignore[attr-defined]


SERVER_SAID_ROLLED_BACK = frozenset({"25P03"})
"""Connection-class codes by which the server itself says the transaction rolled back (§4)."""


def check_commit_verdict(case: Case, stack: Stack, error: BaseException) -> None:
    """
    ``during_commit=True`` turns a connection loss into "outcome unknown", and nothing else.

    Had COMMIT raised this error: a connection loss means the commit may or may not have
    happened, so it is retried only when the call is idempotent (CONTRACT §2); an error by
    which the server says it rolled back (40001, 40P01, 1213, and 25P03 while the driver still
    reports that code) keeps its verdict (CONTRACT §4); other categories are unchanged.
    """
    retried = case.category in RETRIED_BY_DEFAULT
    unknown = case.category is ErrorCategory.CONNECTION and (
        case.shape(stack).code not in SERVER_SAID_ROLLED_BACK
    )
    seen = repr(classify_error(error))

    assert (retried and not unknown) == is_retryable_error(error, during_commit=True), seen
    assert retried == is_retryable_error(error, during_commit=True, idempotent=True), seen
    assert retried == is_retryable_error(error, idempotent=True), seen


def check_all(case: Case, stack: Stack, error: BaseException) -> None:
    """The driver's shape, the classification, and the verdicts with and without COMMIT."""
    check_classified(case, stack, error)
    check_verdict(case, error)
    check_commit_verdict(case, stack, error)
