"""
``Database`` and ``AsyncDatabase``: named engines, tracked sessions and per-user context.

Both classes share :class:`_BaseDatabase` (construction, validation, statistics, listeners)
and differ only in their thin I/O methods (``get_session`` / ``close`` versus their async
twins). Transactional scopes reach a database through :class:`_EngineAdapter`, one per
engine, which implements :class:`txpolicy._binds.BindAdapter`: it opens tracked sessions,
returns the user-context statements as data, and counts what the scopes report.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import numbers
import threading
from collections.abc import (
    AsyncIterator,
    Callable,
    Hashable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import sqlalchemy as _sa
from sqlalchemy.ext import asyncio as _sa_async
from sqlalchemy.orm import Session, sessionmaker

from . import _context
from . import _transactional as _tx
from ._exceptions import ContextIsolationError
from ._policy import RetryPolicy
from ._tracking import (
    EngineStats,
    PoolExhaustedEvent,
    PoolStats,
    SessionEvent,
    SessionInfo,
    _PoolWatcher,
    _Tracker,
    current_thread,
    task_or_thread,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from types import TracebackType

    from typing_extensions import Self

    from ._binds import Propagation, ScopeSpec, Statement
    from ._context import UserContext
    from ._markers import CommitMarker
    from ._transactional import AsyncAttempts, AsyncTransactional, Attempts, Transactional

__all__ = [
    "AsyncDatabase",
    "Database",
    "EngineStats",
    "PoolExhaustedEvent",
    "PoolStats",
    "SessionEvent",
    "SessionInfo",
]

_log: Final = logging.getLogger("txpolicy.database")
_current_context: Final = _context._CURRENT.get

_EngineT = TypeVar("_EngineT", _sa.Engine, _sa_async.AsyncEngine)
_PRIMARY: Final = "primary"
_POOL_KEYS: Final = frozenset({"pool_size", "max_overflow"})
_FACTORY_KEYS: Final = frozenset({"bind", "binds", "class_", "sync_session_class"})


# -- validation, all at construction ---------------------------------------------------------


def _check_size(name: str, value: object, *, minimum: int) -> int:
    """A pool size: an int (not a bool) of at least *minimum*."""
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{name} must be an int, not {type(value).__name__}"
        raise TypeError(msg)
    if value < minimum:
        msg = f"{name} must be >= {minimum}, not {value}"
        raise ValueError(msg)
    return value


def _check_threshold(value: object) -> float | None:
    """A fraction of the pool's capacity in (0, 1], or ``None`` to never warn."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        msg = f"exhaustion_threshold must be a number, not {type(value).__name__}"
        raise TypeError(msg)
    if not 0 < float(value) <= 1:
        msg = f"exhaustion_threshold must be in (0, 1], not {value!r}"
        raise ValueError(msg)
    return float(value)


def _check_options(name: str, value: object, forbidden: frozenset[str]) -> dict[str, Any]:
    """An optional mapping of keyword arguments that must not override what we set."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        msg = f"{name} must be a mapping, not {type(value).__name__}"
        raise TypeError(msg)
    clash = sorted(forbidden & set(value))
    if clash:
        msg = f"{name} must not contain {', '.join(clash)}: the database sets those itself"
        raise ValueError(msg)
    return dict(value)


def _check_policy(policy: object) -> RetryPolicy | None:
    """The database's default policy: a RetryPolicy or None."""
    if policy is not None and not isinstance(policy, RetryPolicy):
        msg = f"policy must be a RetryPolicy or None, not {type(policy).__name__}"
        raise TypeError(msg)
    return policy


def _check_label(operation_type: object) -> None:
    """``get_session``'s operation type is a label, never ``None``."""
    if not isinstance(operation_type, str):
        msg = f"operation_type must be a str, not {type(operation_type).__name__}"
        raise TypeError(msg)


def _check_engine_specs(engines: object) -> dict[str, object]:
    """Normalise *engines* to an ordered name -> URL / engine mapping."""
    if isinstance(engines, Mapping):
        if not engines:
            msg = "engines must name at least one engine"
            raise ValueError(msg)
        for name in engines:
            if not isinstance(name, str) or not name:
                msg = f"engine names must be non-empty strings, not {name!r}"
                raise TypeError(msg)
        return dict(engines)
    return {_PRIMARY: engines}


def _sized_pool(options: Mapping[str, Any]) -> bool:
    """Whether the engine's pool takes ``pool_size`` (not a NullPool or StaticPool chosen)."""
    if "pool" in options:
        return False
    poolclass = options.get("poolclass")
    return poolclass is None or (
        isinstance(poolclass, type) and issubclass(poolclass, _sa.pool.QueuePool)
    )


def _url(spec: str | _sa.URL, *, is_async: bool) -> _sa.URL:
    """Parse a URL: bare ``postgresql://`` means psycopg 3, bare async ``sqlite://`` aiosqlite."""
    url = _sa.make_url(spec)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    elif is_async and url.drivername == "sqlite":
        url = url.set(drivername="sqlite+aiosqlite")
    return url


# -- the bind adapter ----------------------------------------------------------------------------


class _EngineAdapter:
    """What a transactional scope bound to one engine of a database talks to."""

    __slots__ = (
        "_database",
        "_factory",
        "_owner",
        "_register",
        "_statements",
        "closed",
        "dialect",
        "engine",
        "is_async",
        "name",
    )

    def __init__(
        self,
        database: _BaseDatabase[Any],
        name: str,
        engine: _sa.Engine | _sa_async.AsyncEngine,
        factory: Callable[[], Any],
        *,
        is_async: bool,
    ) -> None:
        self._database = database
        self.name = name
        self.engine = engine
        # Sessions are bound to this engine alone (``binds`` cannot be passed), so scopes need
        # not ask each session for its dialect.
        self.dialect = engine.dialect
        self._factory = factory
        self.is_async = is_async
        # Bound once: these run on every transaction attempt. ``closed(resource, failed=...)``
        # of the adapter protocol is the tracker's ``release`` itself.
        self._register = database._tracker.register
        self.closed: Callable[..., None] = database._tracker.release
        self._owner: Callable[[], object] = task_or_thread if is_async else current_thread
        self._statements = database._statements

    def __repr__(self) -> str:
        return f"<txpolicy adapter for engine {self.name!r} of {self._database!r}>"

    def _txpolicy_adapter_(self, engine_name: str | None = None) -> _EngineAdapter:
        if engine_name is None or engine_name == self.name:
            return self
        return self._database._adapter(engine_name)

    @property
    def key(self) -> Hashable:
        return self

    @property
    def yields(self) -> str:
        return "session"

    @property
    def default_policy(self) -> RetryPolicy | None:
        return self._database._policy

    def resolve_context(self, explicit: UserContext | None) -> UserContext | None:
        """The scope's own context, else the one bound to the thread or task."""
        return explicit if explicit is not None else _current_context()

    def _refuse(self, context: UserContext | None) -> None:
        """Why :meth:`open` cannot go on (the checks are inlined there: the happy path)."""
        database = self._database
        if database._closed:
            msg = f"{database!r} is closed"
            raise RuntimeError(msg)
        if context is None and database._require_user_context:
            msg = (
                f"{database!r} requires a user context and none is bound: "
                "use txpolicy.user_context(...) or the scope's user_context= argument"
            )
            raise ContextIsolationError(msg)

    def open(self, spec: ScopeSpec, context: UserContext | None) -> Any:
        database = self._database
        if database._closed or (context is None and database._require_user_context):
            self._refuse(context)
        session = self._factory()
        self._register(
            session, self.name, context, spec.operation_type or "unknown", self._owner()
        )
        return session

    def has_statements(self, dialect_name: str) -> bool:
        """Whether the user context reaches *dialect_name* (SQLite: no statement at all)."""
        return self._statements.applies_to(dialect_name)

    def setup_statements(
        self,
        dialect_name: str,
        spec: ScopeSpec,  # noqa: ARG002 - the protocol's signature
        context: UserContext | None,
    ) -> Sequence[Statement]:
        if context is None and self._database._require_user_context:
            self._refuse(context)
        return self._statements.setup(dialect_name, context)

    def teardown_statements(
        self,
        dialect_name: str,
        spec: ScopeSpec,  # noqa: ARG002 - the protocol's signature
        context: UserContext | None,  # noqa: ARG002 - idem
    ) -> Sequence[Statement]:
        return self._statements.teardown(dialect_name)

    def emit(self, event: str, record: Any) -> None:
        tracker = self._database._tracker
        try:
            if event in ("retry", "give_up"):
                tracker.count_outcome(event, record)
            elif event == "context_isolation_violation":  # a JoinConflict, before the raise
                tracker.count_violation()
                return
            elif event == "escalate":  # the number of the attempt that will run escalated
                tracker.count_escalation()
                return
            tracker.emit(event, record)
        except Exception:  # the protocol: emit never raises
            _log.exception("txpolicy could not deliver event %r", event)


# -- the shared part of both databases -------------------------------------------------------------


class _BaseDatabase(Generic[_EngineT]):
    """Construction, validation, statistics and listeners; no I/O."""

    _is_async: bool
    _counter = itertools.count(1)

    def __init__(
        self,
        engines: str | _sa.URL | _EngineT | Mapping[str, str | _sa.URL | _EngineT],
        *,
        pool_size: int = 25,
        max_overflow: int | None = 50,
        exhaustion_threshold: float | None = 0.9,
        policy: RetryPolicy | None = None,
        settings_prefix: str = "txpolicy",
        require_user_context: bool = False,
        engine_options: Mapping[str, Any] | None = None,
        session_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._closed = True  # sessions are refused until construction has finished
        pool_size = _check_size("pool_size", pool_size, minimum=1)
        if max_overflow is not None:
            max_overflow = _check_size("max_overflow", max_overflow, minimum=0)
        threshold = _check_threshold(exhaustion_threshold)
        self._policy = _check_policy(policy)
        self._statements = _context._ContextStatements(settings_prefix)
        if not isinstance(require_user_context, bool):
            msg = "require_user_context must be a bool"
            raise TypeError(msg)
        self._require_user_context = require_user_context
        options = _check_options("engine_options", engine_options, _POOL_KEYS)
        session_kw = {"expire_on_commit": False}
        session_kw.update(_check_options("session_options", session_options, _FACTORY_KEYS))
        specs = _check_engine_specs(engines)
        for spec in specs.values():
            self._check_engine_spec(spec)

        self._id = next(self._counter)
        self._tracker = _Tracker()
        self._engines: dict[str, _EngineT] = {}
        self._created: list[_EngineT] = []
        self._watchers: list[_PoolWatcher] = []
        self._lock = threading.Lock()
        pool_kw = {
            "pool_size": pool_size,
            "max_overflow": -1 if max_overflow is None else max_overflow,
        }
        try:
            for name, spec in specs.items():
                engine = self._engine_for(spec, pool_kw, options)
                self._engines[name] = engine
                watcher = _PoolWatcher(name, self._sync(engine), threshold, self._tracker)
                watcher.attach()
                self._watchers.append(watcher)
        except BaseException:
            for engine in self._shutdown():
                # Nothing was checked out yet, so the sync dispose is enough for both kinds.
                self._sync(engine).dispose()
            raise
        self._default = next(iter(specs))
        self._adapters = {
            name: _EngineAdapter(
                self, name, engine, self._factory(engine, session_kw), is_async=self._is_async
            )
            for name, engine in self._engines.items()
        }
        self._closed = False

    # -- engines ----------------------------------------------------------------------------

    def _check_engine_spec(self, spec: object) -> None:
        """A URL, or an engine of the right kind, before any engine is created."""
        engine_type = _sa_async.AsyncEngine if self._is_async else _sa.Engine
        other_type = _sa.Engine if self._is_async else _sa_async.AsyncEngine
        if isinstance(spec, (str, _sa.URL, engine_type)):
            return
        kind = type(self).__name__
        if isinstance(spec, other_type):
            msg = f"{kind} needs {engine_type.__name__} objects, not {other_type.__name__}"
            raise TypeError(msg)
        msg = (
            f"{kind} engines must be URLs or {engine_type.__name__} objects, "
            f"not {type(spec).__name__}"
        )
        raise TypeError(msg)

    def _engine_for(
        self, spec: object, pool_kw: Mapping[str, int], options: Mapping[str, Any]
    ) -> _EngineT:
        """An engine from a URL (created, so ours to dispose), or the caller's own engine."""
        if not isinstance(spec, (str, _sa.URL)):
            return spec  # type: ignore[return-value]
        url = _url(spec, is_async=self._is_async)
        kwargs = dict(options)
        if url.get_backend_name() != "sqlite" and _sized_pool(options):
            kwargs.update(pool_kw)
        engine = self._create_engine(url, kwargs)
        self._created.append(engine)
        return engine

    def _create_engine(self, url: _sa.URL, kwargs: dict[str, Any]) -> _EngineT:
        raise NotImplementedError

    def _factory(self, engine: _EngineT, session_kw: dict[str, Any]) -> Callable[[], Any]:
        raise NotImplementedError

    @staticmethod
    def _sync(engine: _sa.Engine | _sa_async.AsyncEngine) -> _sa.Engine:
        return engine.sync_engine if isinstance(engine, _sa_async.AsyncEngine) else engine

    def _adapter(self, engine_name: str) -> _EngineAdapter:
        """The adapter of *engine_name*; the default engine also answers to ``"primary"``."""
        adapter = self._adapters.get(engine_name)
        if adapter is None:
            if engine_name == _PRIMARY:
                return self._adapters[self._default]
            known = ", ".join(repr(name) for name in self._adapters)
            msg = f"unknown engine name {engine_name!r}; this database has {known}"
            raise ValueError(msg)
        return adapter

    def _txpolicy_adapter_(self, engine_name: str | None = None) -> _EngineAdapter:
        """The bind adapter ``transactional(database)`` uses (default engine unless named)."""
        return self._adapter(_PRIMARY if engine_name is None else engine_name)

    def _shutdown(self) -> list[_EngineT]:
        """Detach our pool listeners; return the engines we created, to be disposed."""
        with self._lock:
            self._closed = True
            created, self._created = self._created, []
        for watcher in tuple(self._watchers):
            watcher.detach()  # idempotent; the watchers stay, for stats() after close()
        return created

    def __repr__(self) -> str:
        names = ", ".join(self._engines) if hasattr(self, "_engines") else ""
        return f"<{type(self).__name__} #{getattr(self, '_id', '?')} engines=[{names}]>"

    # -- observation ------------------------------------------------------------------------

    def stats(self) -> PoolStats:
        """
        An immutable snapshot of the counters and of every engine's pool.

        Returns:
            A :class:`PoolStats`; the session and event counters are read under one lock.

        .. versionadded:: 0.1.0
        """
        engines = {watcher.name: watcher.stats() for watcher in tuple(self._watchers)}
        return self._tracker.snapshot(engines)

    def active_sessions(self) -> tuple[SessionInfo, ...]:
        """
        One :class:`SessionInfo` per session that is open now, oldest first.

        .. versionadded:: 0.1.0
        """
        return self._tracker.active_sessions()

    def add_listener(self, event: str, callback: Callable[[Any], object]) -> Callable[[], None]:
        """
        Call *callback* with an immutable record each time *event* happens.

        Events and their records: ``"session_created"`` and ``"session_closed"``
        (:class:`SessionEvent`), ``"retry"`` and ``"give_up"`` (the record the retrying
        scope logs), ``"pool_exhausted"`` (:class:`PoolExhaustedEvent`). Callbacks run
        synchronously, in the thread or task where the event happened; one that raises is
        logged on the ``txpolicy.database`` logger and never breaks the transaction.

        Args:
            event: One of the event names above.
            callback: A synchronous callable taking the record.

        Returns:
            A function that removes the listener (calling it again does nothing).

        Raises:
            ValueError: *event* is not one of the names above.
            TypeError: *callback* is not callable, or is an ``async def`` function.

        .. versionadded:: 0.1.0
        """
        return self._tracker.add_listener(event, callback)


# -- the sync database ----------------------------------------------------------------------------


class Database(_BaseDatabase[_sa.Engine]):
    """
    One or more named SQLAlchemy engines with tracked sessions and per-user context.

    Args:
        engines: A URL, an :class:`~sqlalchemy.engine.Engine`, or a mapping of names to
            either. The default engine is ``"primary"``; in a mapping without that key, the
            first entry is the default and also answers to ``"primary"``. A bare
            ``postgresql://`` URL uses psycopg 3.
        pool_size: Pool size of the engines created from URLs of server databases.
        max_overflow: Connections allowed beyond *pool_size* (``None``: unbounded).
        exhaustion_threshold: Fraction of ``pool_size + max_overflow`` at which a checkout
            logs a pool-exhaustion warning (``None``: never).
        policy: The default :class:`~txpolicy.RetryPolicy` of this database's scopes.
        settings_prefix: Prefix of the database settings that carry the user context
            (``<prefix>.user_id`` on PostgreSQL, ``@<prefix>_user_id`` on MySQL).
        require_user_context: Refuse transactions with no bound :class:`~txpolicy.UserContext`.
        engine_options: Extra keyword arguments for the engines created from URLs.
        session_options: Extra keyword arguments for the ``sessionmaker``
            (``expire_on_commit`` defaults to ``False``: each session closes right after its
            transaction, so expired objects could not be reloaded).

    Engines passed in are used as they are: the pool settings do not apply to them and
    :meth:`close` does not dispose them (only removes the database's pool listeners).

    .. versionadded:: 0.1.0
    """

    _is_async = False

    def _create_engine(self, url: _sa.URL, kwargs: dict[str, Any]) -> _sa.Engine:
        return _sa.create_engine(url, **kwargs)

    def _factory(self, engine: _sa.Engine, session_kw: dict[str, Any]) -> Callable[[], Any]:
        return sessionmaker(engine, **session_kw)

    def transactional(
        self,
        *,
        engine_name: str = "primary",
        policy: RetryPolicy | None = None,
        isolation_level: str | None = None,
        read_only: bool = False,
        propagation: Propagation = "required",
        idempotent: bool = False,
        user_context: UserContext | None = None,
        operation_type: str | None = None,
        lock_timeout: float | None = None,
        statement_timeout: float | None = None,
        verify: Callable[..., bool] | None = None,
        commit_marker: bool | CommitMarker | Callable[..., str] = False,
    ) -> Transactional[Session]:
        """
        :func:`txpolicy.transactional` bound to one engine of this database.

        A decorator (the call is retried per the policy, the database's by default) and a
        context manager (one attempt). Sessions are tracked and carry the user context. A
        decorated function's default ``operation_type`` is its ``__qualname__``.

        Args:
            engine_name: Which engine (default: the default engine).
            policy: The retry policy; default: the database's, else ``RetryPolicy()``.
            isolation_level: As for :func:`txpolicy.transactional`.
            read_only: As for :func:`txpolicy.transactional`.
            propagation: As for :func:`txpolicy.transactional`.
            idempotent: As for :func:`txpolicy.transactional`.
            user_context: The context of this scope (default: the one bound to the thread).
            operation_type: A label for logs, statistics and :meth:`active_sessions`.
            lock_timeout: As for :func:`txpolicy.transactional`.
            statement_timeout: As for :func:`txpolicy.transactional`.
            verify: As for :func:`txpolicy.transactional`.
            commit_marker: As for :func:`txpolicy.transactional` (the marker table is created
                on this engine).

        Returns:
            A decorator that is also a context manager yielding a ``Session``.

        Raises:
            ValueError: Unknown *engine_name*, or a bad option (see
                :func:`txpolicy.transactional`).

        .. versionadded:: 0.1.0
        """
        adapter: Any = self._adapter(engine_name)
        scope: Transactional[Session] = _tx.transactional(
            adapter,
            policy=policy,
            isolation_level=isolation_level,
            read_only=read_only,
            propagation=propagation,
            idempotent=idempotent,
            user_context=user_context,
            operation_type=operation_type,
            lock_timeout=lock_timeout,
            statement_timeout=statement_timeout,
            verify=verify,
            commit_marker=commit_marker,
        )
        return scope

    def attempts(
        self,
        *,
        engine_name: str = "primary",
        policy: RetryPolicy | None = None,
        isolation_level: str | None = None,
        read_only: bool = False,
        propagation: Propagation = "required",
        idempotent: bool = False,
        user_context: UserContext | None = None,
        operation_type: str | None = None,
        lock_timeout: float | None = None,
        statement_timeout: float | None = None,
        verify: Callable[..., bool] | None = None,
        commit_marker: bool | CommitMarker | Callable[..., str] = False,
    ) -> Attempts[Session]:
        """
        :func:`txpolicy.attempts` bound to one engine of this database.

        Takes the same arguments as :meth:`transactional`.

        Returns:
            An iterable of attempts, each a context manager yielding a ``Session``.

        .. versionadded:: 0.1.0
        """
        adapter: Any = self._adapter(engine_name)
        blocks: Attempts[Session] = _tx.attempts(
            adapter,
            policy=policy,
            isolation_level=isolation_level,
            read_only=read_only,
            propagation=propagation,
            idempotent=idempotent,
            user_context=user_context,
            operation_type=operation_type,
            lock_timeout=lock_timeout,
            statement_timeout=statement_timeout,
            verify=verify,
            commit_marker=commit_marker,
        )
        return blocks

    @contextlib.contextmanager
    def get_session(
        self,
        engine_name: str = "primary",
        user_context: UserContext | None = None,
        operation_type: str = "unknown",
    ) -> Iterator[Session]:
        """
        A new tracked session in its own transaction (one attempt, never retried).

        Commits when the block ends, rolls back if it raises; database errors leave as
        classified :class:`~txpolicy.TransactionError` subclasses, other errors unchanged.
        Functions decorated with this database's :meth:`transactional` join it.

        Args:
            engine_name: Which engine.
            user_context: The context of this transaction (default: the one bound to the
                thread). Inside another user's transaction this opens that user's own
                session, which is not a violation.
            operation_type: A label for :meth:`active_sessions` and the event records.

        Yields:
            The session.

        .. versionadded:: 0.1.0
        """
        _check_label(operation_type)
        scope = self.transactional(
            engine_name=engine_name,
            propagation="requires_new",
            user_context=user_context,
            operation_type=operation_type,
        )
        with scope as session:
            yield session

    def close(self) -> None:
        """
        Dispose every engine this database created and detach its pool listeners.

        Engines passed in stay usable. Further sessions are refused.

        .. versionadded:: 0.1.0
        """
        for engine in self._shutdown():
            engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncDatabase(_BaseDatabase[_sa_async.AsyncEngine]):
    """
    :class:`Database` for asyncio: ``AsyncEngine`` objects and ``AsyncSession`` sessions.

    Takes the same arguments as :class:`Database`. A bare ``postgresql://`` URL uses psycopg
    3's async driver and a bare ``sqlite://`` URL uses aiosqlite.

    .. versionadded:: 0.1.0
    """

    _is_async = True

    def _create_engine(self, url: _sa.URL, kwargs: dict[str, Any]) -> _sa_async.AsyncEngine:
        return _sa_async.create_async_engine(url, **kwargs)

    def _factory(
        self, engine: _sa_async.AsyncEngine, session_kw: dict[str, Any]
    ) -> Callable[[], Any]:
        return _sa_async.async_sessionmaker(engine, **session_kw)

    def transactional(
        self,
        *,
        engine_name: str = "primary",
        policy: RetryPolicy | None = None,
        isolation_level: str | None = None,
        read_only: bool = False,
        propagation: Propagation = "required",
        idempotent: bool = False,
        user_context: UserContext | None = None,
        operation_type: str | None = None,
        lock_timeout: float | None = None,
        statement_timeout: float | None = None,
        verify: Callable[..., Awaitable[bool]] | None = None,
        commit_marker: bool | CommitMarker | Callable[..., str] = False,
    ) -> AsyncTransactional[_sa_async.AsyncSession]:
        """
        :func:`txpolicy.transactional` bound to one engine of this database.

        Takes the same arguments as :meth:`Database.transactional`; decorates coroutine
        functions and is an async context manager.

        Returns:
            A decorator that is also an async context manager yielding an ``AsyncSession``.

        .. versionadded:: 0.1.0
        """
        adapter: Any = self._adapter(engine_name)
        scope: AsyncTransactional[_sa_async.AsyncSession] = _tx.transactional(
            adapter,
            policy=policy,
            isolation_level=isolation_level,
            read_only=read_only,
            propagation=propagation,
            idempotent=idempotent,
            user_context=user_context,
            operation_type=operation_type,
            lock_timeout=lock_timeout,
            statement_timeout=statement_timeout,
            verify=verify,
            commit_marker=commit_marker,
        )
        return scope

    def attempts(
        self,
        *,
        engine_name: str = "primary",
        policy: RetryPolicy | None = None,
        isolation_level: str | None = None,
        read_only: bool = False,
        propagation: Propagation = "required",
        idempotent: bool = False,
        user_context: UserContext | None = None,
        operation_type: str | None = None,
        lock_timeout: float | None = None,
        statement_timeout: float | None = None,
        verify: Callable[..., Awaitable[bool]] | None = None,
        commit_marker: bool | CommitMarker | Callable[..., str] = False,
    ) -> AsyncAttempts[_sa_async.AsyncSession]:
        """
        :func:`txpolicy.attempts` bound to one engine of this database (``async for``).

        Takes the same arguments as :meth:`Database.transactional`.

        Returns:
            An async iterable of attempts, each an async context manager yielding an
            ``AsyncSession``.

        .. versionadded:: 0.1.0
        """
        adapter: Any = self._adapter(engine_name)
        blocks: AsyncAttempts[_sa_async.AsyncSession] = _tx.attempts(
            adapter,
            policy=policy,
            isolation_level=isolation_level,
            read_only=read_only,
            propagation=propagation,
            idempotent=idempotent,
            user_context=user_context,
            operation_type=operation_type,
            lock_timeout=lock_timeout,
            statement_timeout=statement_timeout,
            verify=verify,
            commit_marker=commit_marker,
        )
        return blocks

    @contextlib.asynccontextmanager
    async def get_session(
        self,
        engine_name: str = "primary",
        user_context: UserContext | None = None,
        operation_type: str = "unknown",
    ) -> AsyncIterator[_sa_async.AsyncSession]:
        """
        A new tracked session in its own transaction: ``async with db.get_session() as s``.

        Behaves as :meth:`Database.get_session`.

        Args:
            engine_name: Which engine.
            user_context: The context of this transaction (default: the one bound to the
                task).
            operation_type: A label for :meth:`active_sessions` and the event records.

        Yields:
            The session.

        .. versionadded:: 0.1.0
        """
        _check_label(operation_type)
        scope = self.transactional(
            engine_name=engine_name,
            propagation="requires_new",
            user_context=user_context,
            operation_type=operation_type,
        )
        async with scope as session:
            yield session

    async def aclose(self) -> None:
        """
        Dispose every engine this database created and detach its pool listeners.

        .. versionadded:: 0.1.0
        """
        for engine in self._shutdown():
            await engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
