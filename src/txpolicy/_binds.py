"""
What a transactional scope needs from the thing it is bound to.

``transactional()`` accepts a ``sessionmaker``, ``async_sessionmaker``, ``Engine``,
``AsyncEngine``, ``Database`` or ``AsyncDatabase``. At decoration (or scope construction)
time the bind is resolved once into a :class:`BindAdapter`; the sync and async shells only
ever talk to the adapter. ``Database`` / ``AsyncDatabase`` implement the protocol directly
(``_txpolicy_adapter_()`` returns themselves or a helper), which is how session tracking,
user context, retry counters and listeners plug in without the shells knowing about them.

Statements that a scope must run at the start of each attempt (``SET LOCAL`` timeouts,
``set_config`` for the user context, …) are returned as data by :meth:`BindAdapter.setup_statements`
so that the sync and async shells execute the same list: the decision stays pure.

How the shells use an adapter (the order is part of the contract):

1. ``open(spec, context)`` once per attempt (``context`` is the scope's resolved user context,
   see *optional methods* below);
2. execution options (``isolation_level``, ``postgresql_readonly``) and the built-in statements
   of :func:`begin_statements` (read-only mode on MySQL, per-transaction timeouts), then
   ``setup_statements(...)``; both run again after ``ROLLBACK TO SAVEPOINT`` of a nested scope
   (the built-in part only when the nested scope had timeouts of its own);
3. the body; then ``teardown_statements(...)`` **at the end of the transaction, on the same
   connection, right before COMMIT** (or, when the attempt failed and the connection is not
   being invalidated, right before ROLLBACK). A pooled Session gives its connection back to the
   pool at COMMIT, so "after the transaction" cannot be reached reliably; MySQL ``SET``
   statements are not transactional, so running them just before the end is equivalent. They
   must therefore be valid in a transaction that met an error (MySQL ``SET`` statements are);
   a teardown statement that fails gets the connection invalidated, so leftover session state
   never reaches the pool;
4. ``closed(resource, failed=...)`` once per ``open``;
5. ``emit(event, record)`` with ``"retry"`` / ``"give_up"``
   (:class:`~txpolicy._hooks.AttemptRecord`) on failures; ``"success"`` after a call that
   needed more than one attempt, or on every success while a user ``"success"`` hook is
   registered; ``"context_isolation_violation"`` (a :class:`JoinConflict`) right before
   a joining scope raises ``ContextIsolationError``; and ``"escalate"`` (the number of the
   attempt, an ``int``) when a retry will run escalated (``RetryPolicy.escalate_after``).

Optional methods (looked up once when the scope is built; the default applies when absent):

- ``resolve_context(explicit: UserContext | None) -> UserContext | None`` — the user context a
  scope runs under, given the scope's own ``user_context=`` argument. Default: *explicit*. A
  ``Database`` implements it to fall back to the context bound with ``user_context(ctx)``.
- ``dialect`` (an attribute) — the SQLAlchemy dialect of every resource ``open`` returns, when
  it cannot change. Default: asked of each resource.
- ``has_statements(dialect_name: str) -> bool`` — whether ``setup_statements`` /
  ``teardown_statements`` can return anything for that dialect; when it says no, the scopes
  stop asking (asked once per binding and dialect). Default: always ask.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import attrs
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import sessionmaker

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Mapping, Sequence

    from ._context import UserContext
    from ._markers import CommitMarker
    from ._policy import RetryPolicy

Propagation = Literal["required", "nested", "requires_new"]
Yields = Literal["session", "connection"]


@attrs.frozen
class ScopeSpec:
    """The options of one transactional scope, fixed when the scope is built."""

    isolation_level: str | None = None
    read_only: bool = False
    propagation: Propagation = "required"
    idempotent: bool = False
    user_context: UserContext | None = None
    operation_type: str | None = None
    lock_timeout: float | None = None
    statement_timeout: float | None = None
    engine_name: str = "primary"
    # How an owner scope settles a COMMIT of unknown outcome (see ``_markers``); None: it
    # cannot, and CommitUnknownError is raised (or retried, when idempotent).
    verify: Callable[..., Any] | None = None
    commit_marker: CommitMarker | None = None


@attrs.frozen
class Statement:
    """One SQL statement (with bind parameters) for the shell to execute; never string-built."""

    sql: str
    params: Mapping[str, Any] = attrs.field(factory=dict)


@runtime_checkable
class BindAdapter(Protocol):
    """
    The operations a scope performs on its bind.

    Every method must be cheap: they run on the path where nothing fails.
    """

    @property
    def key(self) -> Hashable:
        """Identity used for propagation: scopes join only an owner with the same key."""

    @property
    def is_async(self) -> bool:
        """Whether scopes on this bind are async."""

    @property
    def yields(self) -> Yields:
        """``"session"`` (Session / AsyncSession) or ``"connection"`` (Connection / AsyncConn.)."""

    @property
    def default_policy(self) -> RetryPolicy | None:
        """The policy used when the scope gives none (``None``: ``RetryPolicy()``)."""

    def open(self, spec: ScopeSpec, context: UserContext | None) -> Any:
        """
        A fresh, not yet begun Session / AsyncSession / Connection / AsyncConnection.

        For async binds this returns the object synchronously too (creating an AsyncSession
        or an AsyncConnection does no I/O); the shell awaits what needs awaiting. The adapter
        may refuse (``ContextIsolationError`` when a context is required and missing).
        """

    def setup_statements(
        self, dialect_name: str, spec: ScopeSpec, context: UserContext | None
    ) -> Sequence[Statement]:
        """Statements run after BEGIN of each attempt, and again after ROLLBACK TO SAVEPOINT."""

    def teardown_statements(
        self, dialect_name: str, spec: ScopeSpec, context: UserContext | None
    ) -> Sequence[Statement]:
        """Statements run on the connection after the transaction ends (MySQL variables)."""

    def closed(self, resource: Any, *, failed: bool) -> None:
        """The resource returned by :meth:`open` was closed (tracking)."""

    def emit(self, event: str, record: Any) -> None:
        """Deliver a lifecycle event (``"retry"``, ``"give_up"``, …); must never raise."""


@attrs.frozen
class JoinConflict:
    """The record emitted as ``"context_isolation_violation"`` before a join is refused."""

    operation: str
    owner_context: UserContext | None
    context: UserContext | None


class _FactoryAdapter:
    """The adapter of a plain SQLAlchemy bind: no tracking, no statements, no listeners."""

    __slots__ = ("_make", "is_async", "key", "yields")

    default_policy: RetryPolicy | None = None

    def __init__(
        self, bind: object, make: Callable[[], Any], *, is_async: bool, yields: Yields
    ) -> None:
        self.key: Hashable = bind
        self._make = make
        self.is_async = is_async
        self.yields: Yields = yields

    def open(self, spec: ScopeSpec, context: UserContext | None) -> Any:  # noqa: ARG002
        """A new Session / AsyncSession, or an Engine's / AsyncEngine's new connection."""
        return self._make()

    def setup_statements(
        self,
        dialect_name: str,  # noqa: ARG002 - the protocol's signature
        spec: ScopeSpec,  # noqa: ARG002
        context: UserContext | None,  # noqa: ARG002
    ) -> Sequence[Statement]:
        """None: plain binds carry no user context."""
        return ()

    def teardown_statements(
        self,
        dialect_name: str,  # noqa: ARG002 - the protocol's signature
        spec: ScopeSpec,  # noqa: ARG002
        context: UserContext | None,  # noqa: ARG002
    ) -> Sequence[Statement]:
        """None: plain binds carry no user context."""
        return ()

    def closed(self, resource: Any, *, failed: bool) -> None:
        """Nothing is tracked for plain binds."""

    def emit(self, event: str, record: Any) -> None:
        """Plain binds have no listeners (user hooks still run, see ``add_hook``)."""


def is_plain(adapter: object) -> bool:
    """Whether *adapter* is one of ours, whose statement lists are known to be empty."""
    return type(adapter) is _FactoryAdapter


def resolve_bind(bind: object) -> BindAdapter:
    """
    Resolve what ``transactional()`` was given into its adapter, once.

    Raises:
        TypeError: *bind* is none of the supported kinds.
    """
    if isinstance(bind, async_sessionmaker):
        return _FactoryAdapter(bind, bind, is_async=True, yields="session")
    if isinstance(bind, sessionmaker):
        return _FactoryAdapter(bind, bind, is_async=False, yields="session")
    if isinstance(bind, AsyncEngine):
        return _FactoryAdapter(bind, bind.connect, is_async=True, yields="connection")
    if isinstance(bind, Engine):
        return _FactoryAdapter(bind, bind.connect, is_async=False, yields="connection")
    provider = getattr(type(bind), "_txpolicy_adapter_", None)
    if provider is not None:
        adapter = provider(bind)
        if not isinstance(adapter, BindAdapter):
            raise TypeError(
                f"{type(bind).__name__}._txpolicy_adapter_() returned {adapter!r}, "
                "which does not implement txpolicy's BindAdapter protocol"
            )
        return adapter
    raise TypeError(
        "transactional() needs a sessionmaker, async_sessionmaker, Engine, AsyncEngine, "
        f"Database or AsyncDatabase, got {type(bind).__name__}: {bind!r}"
    )


ISOLATION_LEVELS = frozenset(
    {"READ UNCOMMITTED", "READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE", "SNAPSHOT"}
)


def normalize_isolation(level: object) -> str:
    """
    ``"repeatable_read"``, ``"Repeatable-Read"`` → ``"REPEATABLE READ"`` (SQLAlchemy's spelling).

    Raises:
        TypeError: *level* is not a string.
        ValueError: An unknown level, or ``AUTOCOMMIT`` (no transaction to retry).
    """
    if not isinstance(level, str):
        raise TypeError(f"isolation_level must be a string, got {level!r}")
    name = " ".join(re.split(r"[\s_-]+", level.strip().upper()))
    if name not in ISOLATION_LEVELS:
        raise ValueError(
            f"unknown isolation_level {level!r}; expected one of {sorted(ISOLATION_LEVELS)}"
        )
    return name


_POSTGRES = frozenset({"postgresql", "cockroachdb"})
_MYSQL = frozenset({"mysql", "mariadb"})


def execution_options(dialect_name: str, spec: ScopeSpec) -> dict[str, Any] | None:
    """Connection execution options for an attempt (SQLAlchemy resets them at checkin)."""
    options: dict[str, Any] = {}
    if spec.isolation_level is not None:
        options["isolation_level"] = spec.isolation_level
    if spec.read_only and dialect_name in _POSTGRES:
        options["postgresql_readonly"] = True
    return options or None


def _milliseconds(seconds: float) -> int:
    """At least 1 ms: 0 would mean "no timeout" to the server."""
    return max(1, math.ceil(seconds * 1000))


def begin_statements(
    dialect_name: str, spec: ScopeSpec, *, is_mariadb: bool, savepoint: bool = False
) -> tuple[Statement, ...]:
    """
    The built-in statements of an attempt (or of a savepoint scope, *savepoint*).

    PostgreSQL: ``set_config(..., true)`` (transaction-local, undone by ROLLBACK TO SAVEPOINT)
    for ``lock_timeout`` / ``statement_timeout`` in milliseconds. MySQL / MariaDB:
    ``SET TRANSACTION READ ONLY`` (before the transaction starts: the driver begins
    implicitly with the next statement), then the session equivalents of the timeouts
    (``innodb_lock_wait_timeout`` in whole seconds, at least 1; ``max_statement_time`` on
    MariaDB, ``max_execution_time`` on MySQL), restored by :func:`end_statements`.
    Other databases (SQLite): nothing.
    """
    lock, stmt = spec.lock_timeout, spec.statement_timeout
    if dialect_name in _POSTGRES:
        if lock is None and stmt is None:
            return ()
        calls, params = [], {}
        if lock is not None:
            calls.append("set_config('lock_timeout', :lock_timeout, true)")
            params["lock_timeout"] = f"{_milliseconds(lock)}ms"
        if stmt is not None:
            calls.append("set_config('statement_timeout', :statement_timeout, true)")
            params["statement_timeout"] = f"{_milliseconds(stmt)}ms"
        return (Statement("SELECT " + ", ".join(calls), params),)
    if dialect_name in _MYSQL:
        out = []
        if spec.read_only and not savepoint:
            out.append(Statement("SET TRANSACTION READ ONLY"))
        if lock is not None:
            out.append(
                Statement(
                    "SET SESSION innodb_lock_wait_timeout = :seconds",
                    {"seconds": max(1, math.ceil(lock))},
                )
            )
        if stmt is not None:
            if is_mariadb:
                out.append(
                    Statement("SET SESSION max_statement_time = :seconds", {"seconds": stmt})
                )
            else:
                out.append(
                    Statement(
                        "SET SESSION max_execution_time = :ms", {"ms": _milliseconds(stmt)}
                    )
                )
        return tuple(out)
    return ()


def end_statements(
    dialect_name: str, spec: ScopeSpec, *, is_mariadb: bool
) -> tuple[Statement, ...]:
    """Statements that undo the session-level settings of :func:`begin_statements` (MySQL)."""
    if dialect_name not in _MYSQL:
        return ()
    out = []
    if spec.lock_timeout is not None:
        out.append(Statement("SET SESSION innodb_lock_wait_timeout = DEFAULT"))
    if spec.statement_timeout is not None:
        variable = "max_statement_time" if is_mariadb else "max_execution_time"
        out.append(Statement(f"SET SESSION {variable} = DEFAULT"))
    return tuple(out)


@attrs.frozen
class EscalationLock:
    """
    The statements of the cross-process escalation lock (see ``_escalation``).

    *acquire* is the first statement of an escalated attempt; its one column says whether it
    got the lock. When it did not, the shell runs *wait* (which blocks until the holder is
    done) in that same transaction, rolls it back and starts a fresh one with *acquire* again.
    """

    acquire: Statement
    wait: Statement


def escalation_lock(dialect_name: str, key: int) -> EscalationLock | None:
    """
    The escalation lock of *dialect_name*, or ``None`` where there is none.

    PostgreSQL: a transaction-scoped advisory lock on *key*, taken with
    ``pg_try_advisory_xact_lock`` (never waiting inside the transaction that will do the
    work: its snapshot would predate the holder's commit) and waited for with
    ``pg_advisory_xact_lock_shared`` (several waiters wake together; the shared lock is
    released when the waiting transaction is rolled back). COMMIT and ROLLBACK release it.

    None elsewhere: MySQL's ``GET_LOCK`` is session-scoped (it outlives ROLLBACK and would
    need a release on every path, or leak to the next user of the pooled connection);
    CockroachDB has no blocking advisory locks; SQLite serialises writers itself. The
    in-process gate still applies to every database.
    """
    if dialect_name != "postgresql":
        return None
    params = {"key": key}
    return EscalationLock(
        acquire=Statement("SELECT pg_try_advisory_xact_lock(:key)", params),
        wait=Statement("SELECT pg_advisory_xact_lock_shared(:key)", params),
    )
