"""
txpolicy: database transactions that survive the failures real databases produce.

Everything public is importable from here; the modules behind it are private.
"""

from __future__ import annotations

from ._context import UserContext, current_user_context, user_context
from ._database import AsyncDatabase, Database
from ._errors import classify_error, is_retryable_error
from ._exceptions import (
    CommitUnknownError,
    ConfigurationError,
    ConnectionError,  # noqa: A004 - the contract's name; also a builtins.ConnectionError
    ContextIsolationError,
    DataError,
    DeadlockError,
    ErrorCategory,
    IntegrityError,
    LockTimeoutError,
    NoActiveTransaction,
    PermissionError,  # noqa: A004 - the contract's name; also a builtins.PermissionError
    ReadOnlyError,
    ResourceError,
    SchemaError,
    SerializationError,
    TimeoutError,  # noqa: A004 - the contract's name; also a builtins.TimeoutError
    TransactionError,
    TransientError,
    UnknownDatabaseError,
)
from ._hooks import AttemptRecord, add_hook
from ._markers import CommitMarker, apurge_commit_markers, purge_commit_markers
from ._policy import RetryBudget, RetryPolicy
from ._tracking import EngineStats, PoolExhaustedEvent, PoolStats, SessionEvent, SessionInfo
from ._transactional import (
    AsyncAttempt,
    AsyncAttempts,
    AsyncTransactional,
    Attempt,
    Attempts,
    Transactional,
    attempts,
    current_session,
    on_commit,
    transactional,
)

__all__ = [
    "AsyncAttempt",
    "AsyncAttempts",
    "AsyncDatabase",
    "AsyncTransactional",
    "Attempt",
    "AttemptRecord",
    "Attempts",
    "CommitMarker",
    "CommitUnknownError",
    "ConfigurationError",
    "ConnectionError",
    "ContextIsolationError",
    "DataError",
    "Database",
    "DeadlockError",
    "EngineStats",
    "ErrorCategory",
    "IntegrityError",
    "LockTimeoutError",
    "NoActiveTransaction",
    "PermissionError",
    "PoolExhaustedEvent",
    "PoolStats",
    "ReadOnlyError",
    "ResourceError",
    "RetryBudget",
    "RetryPolicy",
    "SchemaError",
    "SerializationError",
    "SessionEvent",
    "SessionInfo",
    "TimeoutError",
    "TransactionError",
    "Transactional",
    "TransientError",
    "UnknownDatabaseError",
    "UserContext",
    "add_hook",
    "apurge_commit_markers",
    "attempts",
    "classify_error",
    "current_session",
    "current_user_context",
    "is_retryable_error",
    "on_commit",
    "purge_commit_markers",
    "transactional",
    "user_context",
]


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import version  # noqa: PLC0415 - lazy, as stamina does

        return version("txpolicy")
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
