"""
txpolicy: database transactions that survive the failures real databases produce.

Everything public is importable from here; the modules behind it are private.
"""

from __future__ import annotations

from ._context import UserContext, user_context
from ._database import AsyncDatabase, Database, PoolStats, SessionInfo
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
from ._policy import RetryBudget, RetryPolicy
from ._transactional import attempts, current_session, on_commit, transactional

__all__ = [
    "AsyncDatabase",
    "CommitUnknownError",
    "ConfigurationError",
    "ConnectionError",
    "ContextIsolationError",
    "DataError",
    "Database",
    "DeadlockError",
    "ErrorCategory",
    "IntegrityError",
    "LockTimeoutError",
    "NoActiveTransaction",
    "PermissionError",
    "PoolStats",
    "ReadOnlyError",
    "ResourceError",
    "RetryBudget",
    "RetryPolicy",
    "SchemaError",
    "SerializationError",
    "SessionInfo",
    "TimeoutError",
    "TransactionError",
    "TransientError",
    "UnknownDatabaseError",
    "UserContext",
    "attempts",
    "classify_error",
    "current_session",
    "is_retryable_error",
    "on_commit",
    "transactional",
    "user_context",
]


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import version  # noqa: PLC0415 - lazy, as stamina does

        return version("txpolicy")
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
