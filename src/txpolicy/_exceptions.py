"""
txpolicy's own exceptions.

The tree::

    Exception
    ├── TransactionError                      every classified database error
    │   ├── TransientError                    retried by default
    │   │   ├── DeadlockError
    │   │   ├── SerializationError
    │   │   ├── LockTimeoutError
    │   │   ├── ConnectionError               also builtins.ConnectionError
    │   │   ├── ReadOnlyError
    │   │   └── ResourceError
    │   ├── TimeoutError                      also builtins.TimeoutError
    │   ├── CommitUnknownError
    │   ├── IntegrityError
    │   ├── DataError
    │   ├── PermissionError                   also builtins.PermissionError
    │   ├── SchemaError
    │   └── UnknownDatabaseError
    ├── ConfigurationError                    also ValueError
    ├── ContextIsolationError                 also RuntimeError
    └── NoActiveTransaction                   also LookupError
"""

from __future__ import annotations

import builtins
import enum
from typing import ClassVar

__all__ = [
    "CATEGORY_CLASSES",
    "DEFAULT_RETRY_ON",
    "CommitUnknownError",
    "ConfigurationError",
    "ConnectionError",
    "ContextIsolationError",
    "DataError",
    "DeadlockError",
    "ErrorCategory",
    "IntegrityError",
    "LockTimeoutError",
    "NoActiveTransaction",
    "PermissionError",
    "ReadOnlyError",
    "ResourceError",
    "SchemaError",
    "SerializationError",
    "TimeoutError",
    "TransactionError",
    "TransientError",
    "UnknownDatabaseError",
]


class ErrorCategory(str, enum.Enum):
    """
    What a database error means for the transaction that met it.

    The string values are stable and appear in logs, metrics and the command line.

    .. versionadded:: 0.1.0
    """

    DEADLOCK = "deadlock"
    SERIALIZATION = "serialization"
    LOCK_TIMEOUT = "lock_timeout"
    CONNECTION = "connection"
    READ_ONLY = "read_only"
    RESOURCE = "resource"
    STATEMENT_TIMEOUT = "statement_timeout"
    COMMIT_UNKNOWN = "commit_unknown"
    INTEGRITY = "integrity"
    DATA = "data"
    PERMISSION = "permission"
    SCHEMA = "schema"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


DEFAULT_RETRY_ON: frozenset[ErrorCategory] = frozenset(
    {
        ErrorCategory.DEADLOCK,
        ErrorCategory.SERIALIZATION,
        ErrorCategory.LOCK_TIMEOUT,
        ErrorCategory.CONNECTION,
        ErrorCategory.READ_ONLY,
        ErrorCategory.RESOURCE,
    }
)
"""The categories retried by default: the six "yes" rows of the contract."""


class TransactionError(Exception):
    """
    Base of every classified database error.

    Args:
        message: Human-readable text, usually the driver's message.
        category: What the error means; defaults to the class's own category.
        sqlstate: The five-character SQLSTATE, when the driver gave one.
        vendor_code: The vendor's native code (MySQL errno, SQLite extended code, ORA number…).
        dialect: ``"postgresql"``, ``"mysql"``, ``"sqlite"``, ``"mssql"``, ``"oracle"`` or
            ``"cockroachdb"``, when known.
        original: The innermost driver exception.
        during_commit: Whether the error was raised by COMMIT.
        attempts: How many attempts the retrying scope made before raising it.

    .. versionadded:: 0.1.0
    """

    default_category: ClassVar[ErrorCategory] = ErrorCategory.UNKNOWN

    category: ErrorCategory
    sqlstate: str | None
    vendor_code: int | str | None
    dialect: str | None
    original: BaseException
    during_commit: bool
    attempts: int

    def __init__(
        self,
        message: str = "",
        *,
        category: ErrorCategory | None = None,
        sqlstate: str | None = None,
        vendor_code: int | str | None = None,
        dialect: str | None = None,
        original: BaseException | None = None,
        during_commit: bool = False,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.category = self.default_category if category is None else category
        self.sqlstate = sqlstate
        self.vendor_code = vendor_code
        self.dialect = dialect
        self.original = self if original is None else original
        self.during_commit = during_commit
        self.attempts = attempts

    @property
    def retryable(self) -> bool:
        """The table's default verdict for this category, ignoring idempotency."""
        return self.category in DEFAULT_RETRY_ON

    @property
    def message(self) -> str:
        """The message the error was built with."""
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        code = self.sqlstate if self.sqlstate is not None else self.vendor_code
        return (
            f"{type(self).__name__}({self.message!r}, category={self.category.value!r}, "
            f"code={code!r}, dialect={self.dialect!r}, attempts={self.attempts})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only constructor arguments need help to survive pickling (multiprocessing).
        return (_rebuild, (type(self), self.message, self._state()))

    def _state(self) -> dict[str, object]:
        return {
            "category": self.category,
            "sqlstate": self.sqlstate,
            "vendor_code": self.vendor_code,
            "dialect": self.dialect,
            "original": None if self.original is self else self.original,
            "during_commit": self.during_commit,
            "attempts": self.attempts,
        }


def _rebuild(
    cls: type[TransactionError], message: str, state: dict[str, object]
) -> TransactionError:
    """Rebuild a pickled TransactionError (``__reduce__`` helper)."""
    return cls(message, **state)  # type: ignore[arg-type]


class TransientError(TransactionError):
    """
    Base of the errors retried by default.

    .. versionadded:: 0.1.0
    """


class DeadlockError(TransientError):
    """
    The database broke a deadlock by rolling this transaction back.

    .. versionadded:: 0.1.0
    """

    default_category = ErrorCategory.DEADLOCK


class SerializationError(TransientError):
    """
    The transaction could not be serialized with concurrent ones and was rolled back.

    .. versionadded:: 0.1.0
    """

    default_category = ErrorCategory.SERIALIZATION


class LockTimeoutError(TransientError):
    """
    A lock could not be acquired in time (``NOWAIT``, ``lock_timeout``, "database is locked").

    .. versionadded:: 0.1.0
    """

    default_category = ErrorCategory.LOCK_TIMEOUT


class ConnectionError(TransientError, builtins.ConnectionError):  # noqa: A001
    """
    The connection was lost or refused; retried on a fresh connection, except during COMMIT.

    .. versionadded:: 0.1.0
    """

    default_category = ErrorCategory.CONNECTION


class ReadOnlyError(TransientError):
    """
    A write reached a read-only server or transaction (for example a standby after failover).

    .. versionadded:: 0.1.0
    """

    default_category = ErrorCategory.READ_ONLY


class ResourceError(TransientError):
    """
    The server or the pool ran out of something: connections, memory, pool checkouts.

    .. versionadded:: 0.1.0
    """

    default_category = ErrorCategory.RESOURCE


class TimeoutError(TransactionError, builtins.TimeoutError):  # noqa: A001
    """
    A statement ran past its timeout or was cancelled; not retried by default.

    .. versionadded:: 0.1.0
    """

    default_category = ErrorCategory.STATEMENT_TIMEOUT


class CommitUnknownError(TransactionError):
    """
    COMMIT was sent but its outcome is unknown: the transaction may or may not have committed.

    Never retried unless the scope is idempotent or the outcome can be verified.

    .. versionadded:: 0.1.0
    """

    default_category = ErrorCategory.COMMIT_UNKNOWN


class IntegrityError(TransactionError):
    """
    A constraint was violated (unique, foreign key, not null, check, exclusion).

    .. versionadded:: 0.1.0
    """

    default_category = ErrorCategory.INTEGRITY


class DataError(TransactionError):
    """
    A value was invalid for its type or out of range.

    .. versionadded:: 0.1.0
    """

    default_category = ErrorCategory.DATA


class PermissionError(TransactionError, builtins.PermissionError):  # noqa: A001
    """
    The role or user lacks a privilege, or authentication failed.

    .. versionadded:: 0.1.0
    """

    default_category = ErrorCategory.PERMISSION


class SchemaError(TransactionError):
    """
    The statement refers to something that does not exist, or is not valid SQL.

    .. versionadded:: 0.1.0
    """

    default_category = ErrorCategory.SCHEMA


class UnknownDatabaseError(TransactionError):
    """
    A database error that fits no other category; never retried.

    .. versionadded:: 0.1.0
    """

    default_category = ErrorCategory.UNKNOWN


CATEGORY_CLASSES: dict[ErrorCategory, type[TransactionError]] = {
    ErrorCategory.DEADLOCK: DeadlockError,
    ErrorCategory.SERIALIZATION: SerializationError,
    ErrorCategory.LOCK_TIMEOUT: LockTimeoutError,
    ErrorCategory.CONNECTION: ConnectionError,
    ErrorCategory.READ_ONLY: ReadOnlyError,
    ErrorCategory.RESOURCE: ResourceError,
    ErrorCategory.STATEMENT_TIMEOUT: TimeoutError,
    ErrorCategory.COMMIT_UNKNOWN: CommitUnknownError,
    ErrorCategory.INTEGRITY: IntegrityError,
    ErrorCategory.DATA: DataError,
    ErrorCategory.PERMISSION: PermissionError,
    ErrorCategory.SCHEMA: SchemaError,
    ErrorCategory.UNKNOWN: UnknownDatabaseError,
}
"""The exception class raised for each category."""


class ConfigurationError(ValueError):
    """
    Options that cannot work together, such as joining a transaction with another isolation level.

    .. versionadded:: 0.1.0
    """


class ContextIsolationError(RuntimeError):
    """
    A transaction would run under the wrong user context, or under none when one is required.

    .. versionadded:: 0.1.0
    """


class NoActiveTransaction(LookupError):  # noqa: N818 - the contract's name
    """
    ``current_session()`` or ``on_commit()`` was called outside a transactional scope.

    .. versionadded:: 0.1.0
    """
