"""
Session tracking, statistics, lifecycle listeners and pool-exhaustion detection.

One :class:`_Tracker` per database holds every counter under one lock, so a
:class:`PoolStats` snapshot is exact under concurrency. One :class:`_PoolWatcher` per engine
follows SQLAlchemy's pool ``checkout`` / ``checkin`` / ``detach`` events and decides, under
its own lock, when a checkout crosses the exhaustion threshold.

Nothing here does database I/O. The path where nothing fails costs a lock, a counter and a
dict entry per session; event records are only built when someone listens.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import itertools
import logging
import math
import threading
import time
import types
from typing import TYPE_CHECKING, Any, Final

import attrs
import sqlalchemy as _sa
from sqlalchemy import pool as _pool

from ._exceptions import ErrorCategory

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Mapping

    from ._context import UserContext

__all__ = [
    "EVENTS",
    "EngineStats",
    "PoolExhaustedEvent",
    "PoolStats",
    "SessionEvent",
    "SessionInfo",
]

EVENTS: Final[frozenset[str]] = frozenset(
    {"session_created", "session_closed", "retry", "give_up", "pool_exhausted"}
)

_log: Final = logging.getLogger("txpolicy.database")
_pool_log: Final = logging.getLogger("txpolicy.pool")


@attrs.frozen
class SessionInfo:
    """
    One live session handed out by a database.

    Attributes:
        session_id: Unique within the process, increasing.
        engine_name: The engine the session is bound to.
        user_id: The user of the session's context, or ``None``.
        tenant_id: The tenant of the session's context, or ``None``.
        operation_type: What the session is for: the decorated function's ``__qualname__``,
            the scope's ``operation_type=``, or ``"unknown"``.
        started_at: When the session was opened (aware, UTC).
        owner: The name of the thread, or of the asyncio task, that opened it.

    .. versionadded:: 0.1.0
    """

    session_id: int
    engine_name: str
    user_id: str | int | None
    tenant_id: str | int | None
    operation_type: str
    started_at: dt.datetime
    owner: str


@attrs.frozen
class EngineStats:
    """
    The pool of one engine, as the database's pool listeners see it.

    Attributes:
        size: The pool's steady size (``pool_size``), 0 for pools without one.
        checked_out: Connections currently checked out.
        overflow: Connections open beyond ``size`` (never negative).
        capacity: ``pool_size + max_overflow``, or ``None`` when the pool is unbounded.
        utilisation: ``checked_out / capacity``, or ``None`` when the pool is unbounded.

    .. versionadded:: 0.1.0
    """

    size: int
    checked_out: int
    overflow: int
    capacity: int | None
    utilisation: float | None


@attrs.frozen
class PoolStats:
    """
    An immutable snapshot of a database's counters, taken under one lock.

    Attributes:
        total_sessions_created: Sessions opened since the database was built, one per
            transaction attempt.
        active_sessions_count: Sessions open now.
        sessions_cleaned_up: Sessions closed again, whatever the outcome.
        pool_exhaustion_warnings: Threshold crossings warned about.
        context_isolation_violations: Scopes refused for joining another user's
            transaction.
        retries_by_category: Retries decided, per :class:`~txpolicy.ErrorCategory` (every
            category is present).
        give_ups_by_category: Errors raised after the last attempt or because they were not
            retryable, per category (every category is present).
        engines: Pool figures per engine name.
        escalations: Attempts that ran escalated (``RetryPolicy.escalate_after``).

    .. versionadded:: 0.1.0
    """

    total_sessions_created: int
    active_sessions_count: int
    sessions_cleaned_up: int
    pool_exhaustion_warnings: int
    context_isolation_violations: int
    retries_by_category: Mapping[ErrorCategory, int]
    give_ups_by_category: Mapping[ErrorCategory, int]
    engines: Mapping[str, EngineStats]
    escalations: int = 0


@attrs.frozen
class SessionEvent:
    """
    The record of a ``"session_created"`` or ``"session_closed"`` event.

    Attributes:
        event: ``"session_created"`` or ``"session_closed"``.
        session: The session's :class:`SessionInfo`.
        failed: For ``"session_closed"``: whether its transaction did not commit.
        duration: For ``"session_closed"``: seconds the session was open.

    .. versionadded:: 0.1.0
    """

    event: str
    session: SessionInfo
    failed: bool = False
    duration: float | None = None


@attrs.frozen
class PoolExhaustedEvent:
    """
    The record of a ``"pool_exhausted"`` event.

    Attributes:
        engine_name: The engine whose pool crossed the threshold.
        checked_out: Connections checked out once the crossing checkout completed.
        capacity: ``pool_size + max_overflow``.
        threshold: The database's ``exhaustion_threshold``.

    .. versionadded:: 0.1.0
    """

    engine_name: str
    checked_out: int
    capacity: int
    threshold: float


_get_running_loop = asyncio.events._get_running_loop
_current_task = asyncio.current_task
current_thread = threading.current_thread
_monotonic = time.monotonic
# Session ids: unique within the process (every database draws from it); next() on an
# itertools.count is atomic.
_session_ids = itertools.count(1)


def task_or_thread() -> object:
    """The running asyncio task, else the current thread: who opens a session."""
    loop = _get_running_loop()
    if loop is not None:
        task = _current_task(loop)
        if task is not None:
            return task
    return current_thread()


def _owner_name(owner: object) -> str:
    """The name of a session's owner (a task or a thread), read when someone asks for it."""
    get_name = getattr(owner, "get_name", None)  # an asyncio task
    if get_name is not None:
        return str(get_name())
    return str(getattr(owner, "name", owner))


def _category_of(record: object) -> ErrorCategory | None:
    """Find the category of a retry / give-up record, however the scope shaped it."""
    for candidate in (record, getattr(record, "error", None), getattr(record, "exception", None)):
        category = getattr(candidate, "category", None)
        if isinstance(category, ErrorCategory):
            return category
    return None


# A registered session: (session_id, engine_name, context, operation_type, started (monotonic),
# owner (the task or thread), resource). A plain tuple: registering is on the path where
# nothing fails, and the SessionInfo (the owner's name included) is only built when someone
# asks for it.
_Entry = tuple[int, str, "UserContext | None", str, float, object, object]


def _info(entry: _Entry, wall_offset: float) -> SessionInfo:
    """The public view of a registry entry."""
    session_id, engine_name, context, operation_type, started, owner, _ = entry
    return SessionInfo(
        session_id=session_id,
        engine_name=engine_name,
        user_id=None if context is None else context.user_id,
        tenant_id=None if context is None else context.tenant_id,
        operation_type=operation_type,
        started_at=dt.datetime.fromtimestamp(started + wall_offset, dt.timezone.utc),
        owner=_owner_name(owner),
    )


_ZERO_BY_CATEGORY: Final = dict.fromkeys(ErrorCategory, 0)


class _Tracker:
    """
    Counters, the live-session registry and the listeners of one database.

    The registry is a dict keyed by ``id(resource)`` whose entries hold the resource itself,
    so an id cannot be reused while its entry exists. Registering adds the entry and counts
    the session under the lock; releasing only pops the entry (atomic), so sessions closed
    are ``created - active``, and a snapshot taken under the lock is consistent.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Sessions record a monotonic start (cheaper, and durations stay right if the wall
        # clock jumps); this turns it into wall-clock time for SessionInfo.started_at.
        self._wall_offset = time.time() - time.monotonic()
        self._sessions: dict[int, _Entry] = {}
        self._created = 0
        self._exhaustion = 0
        self._violations = 0
        self._escalations = 0
        self._retries = dict(_ZERO_BY_CATEGORY)
        self._give_ups = dict(_ZERO_BY_CATEGORY)
        # Copy-on-write tuples: emitting iterates without taking the lock.
        self._listeners: dict[str, tuple[Callable[[Any], object], ...]] = dict.fromkeys(
            EVENTS, ()
        )

    # -- sessions ---------------------------------------------------------------------------

    def register(
        self,
        resource: object,
        engine_name: str,
        context: UserContext | None,
        operation_type: str,
        owner: object,
    ) -> None:
        """Record a session the database just created for *owner* (a task or a thread)."""
        entry = (
            next(_session_ids),
            engine_name,
            context,
            operation_type,
            _monotonic(),
            owner,
            resource,
        )
        with self._lock:
            self._sessions[id(resource)] = entry
            self._created += 1
        if self._listeners["session_created"]:
            record = SessionEvent("session_created", _info(entry, self._wall_offset))
            self.emit("session_created", record)

    def release(self, resource: object, *, failed: bool) -> None:
        """Forget a closed session; idempotent (only the first call counts)."""
        # No lock: the pop is atomic, and the entry (which holds *resource*) can only be
        # the one of *resource*.
        entry = self._sessions.pop(id(resource), None)
        if entry is None:
            return
        if self._listeners["session_closed"]:
            duration = time.monotonic() - entry[4]
            info = _info(entry, self._wall_offset)
            self.emit("session_closed", SessionEvent("session_closed", info, failed, duration))

    def active_sessions(self) -> tuple[SessionInfo, ...]:
        """A snapshot of the live sessions, oldest first."""
        with self._lock:
            entries = list(self._sessions.copy().values())
        return tuple(_info(entry, self._wall_offset) for entry in sorted(entries))

    # -- counters ---------------------------------------------------------------------------

    def count_exhaustion(self) -> None:
        """One more pool-exhaustion warning."""
        with self._lock:
            self._exhaustion += 1

    def count_violation(self) -> None:
        """One more context-isolation violation."""
        with self._lock:
            self._violations += 1

    def count_escalation(self) -> None:
        """One more escalated attempt."""
        with self._lock:
            self._escalations += 1

    def count_outcome(self, event: str, record: object) -> None:
        """Count a ``"retry"`` or ``"give_up"`` record under its category."""
        category = _category_of(record)
        if category is None:
            return
        table = self._retries if event == "retry" else self._give_ups
        with self._lock:
            table[category] += 1

    def snapshot(self, engines: Mapping[str, EngineStats]) -> PoolStats:
        """Every counter read under one lock."""
        with self._lock:
            created, active = self._created, len(self._sessions)
            return PoolStats(
                total_sessions_created=created,
                active_sessions_count=active,
                sessions_cleaned_up=created - active,
                pool_exhaustion_warnings=self._exhaustion,
                context_isolation_violations=self._violations,
                retries_by_category=types.MappingProxyType(dict(self._retries)),
                give_ups_by_category=types.MappingProxyType(dict(self._give_ups)),
                engines=types.MappingProxyType(dict(engines)),
                escalations=self._escalations,
            )

    # -- listeners --------------------------------------------------------------------------

    def add_listener(self, event: str, callback: Callable[[Any], object]) -> Callable[[], None]:
        """Subscribe *callback* to *event*; return the function that unsubscribes it."""
        if event not in EVENTS:
            msg = f"unknown event {event!r}; known events: {', '.join(sorted(EVENTS))}"
            raise ValueError(msg)
        if not callable(callback):
            msg = f"listener must be callable, not {type(callback).__name__}"
            raise TypeError(msg)
        if inspect.iscoroutinefunction(callback):
            msg = "listeners are called synchronously; an async function would never be awaited"
            raise TypeError(msg)
        with self._lock:
            self._listeners[event] = (*self._listeners[event], callback)

        def remove() -> None:
            with self._lock:
                callbacks = list(self._listeners[event])
                if callback in callbacks:
                    callbacks.remove(callback)
                    self._listeners[event] = tuple(callbacks)

        return remove

    def has_listeners(self, event: str) -> bool:
        """Whether building a record for *event* is worth it."""
        return bool(self._listeners.get(event))

    def emit(self, event: str, record: object) -> None:
        """Call every listener of *event*; a listener that raises is logged and skipped."""
        for callback in self._listeners.get(event, ()):
            try:
                callback(record)
            except Exception:  # noqa: PERF203 - one listener must not silence the others
                _log.exception("txpolicy listener %r for %r raised", callback, event)


def _pool_shape(pool: _pool.Pool) -> tuple[int, int | None]:
    """The pool's steady size and its capacity (``None``: unbounded or not a sized pool)."""
    if isinstance(pool, _pool.QueuePool):
        size = pool.size()
        max_overflow = pool._max_overflow
        if size <= 0 or max_overflow < 0:
            return size, None
        return size, size + max_overflow
    return 0, None


def _overflow(pool: _pool.Pool) -> int:
    """Connections open beyond the pool's size; SQLAlchemy's own figure starts negative."""
    if isinstance(pool, _pool.QueuePool):
        return max(0, pool.overflow())
    return 0


class _PoolWatcher:
    """Follows one engine's pool events: an exact checked-out count and the threshold."""

    def __init__(
        self,
        name: str,
        engine: _sa.Engine,
        threshold: float | None,
        tracker: _Tracker,
    ) -> None:
        self.name = name
        self._engine = engine
        self._threshold = threshold
        self._tracker = tracker
        self._lock = threading.Lock()
        # Records, not a bare count: a checkout event may repeat for one record (a
        # DisconnectionError raised by a later checkout listener) and checkins may come for
        # records checked out before the watcher was attached. Both are ignored.
        self._out: set[Hashable] = set()
        self._armed = True
        self._size, self._capacity = _pool_shape(engine.pool)
        # The checked-out count at which a checkout warns, precomputed (0: never warns).
        self._limit = (
            0
            if self._capacity is None or threshold is None
            else max(1, math.ceil(threshold * self._capacity - 1e-9))
        )
        # Without a limit nothing is ever decided on a checkout: the set alone (whose add and
        # discard are atomic) keeps the count, no lock needed.
        if not self._limit:
            self._listeners: tuple[tuple[str, Callable[..., None]], ...] = (
                ("checkout", self._count_checkout),
                ("checkin", self._count_checkin),
                ("detach", self._count_checkin),
            )
        else:
            self._listeners = (
                ("checkout", self._on_checkout),
                ("checkin", self._on_checkin),
                ("detach", self._on_checkin),
            )
        self._attached = False

    def attach(self) -> None:
        """Listen to the engine's pool (SQLAlchemy carries the listeners over a dispose)."""
        for name, callback in self._listeners:
            _sa.event.listen(self._engine, name, callback)
        self._attached = True

    def detach(self) -> None:
        """Stop listening, leaving an engine the database did not create as it was."""
        if not self._attached:
            return
        self._attached = False
        for name, callback in self._listeners:
            if _sa.event.contains(self._engine, name, callback):
                _sa.event.remove(self._engine, name, callback)

    def _count_checkout(self, _dbapi_connection: object, record: Hashable, _proxy: object) -> None:
        self._out.add(record)

    def _count_checkin(self, _dbapi_connection: object, record: Hashable) -> None:
        self._out.discard(record)

    def _on_checkout(self, _dbapi_connection: object, record: Hashable, _proxy: object) -> None:
        out = self._out
        with self._lock:
            if record in out:
                return
            out.add(record)
            if not self._armed or len(out) < self._limit:
                return
            self._armed = False
            crossed = len(out)
        self._warn(crossed)

    def _on_checkin(self, _dbapi_connection: object, record: Hashable) -> None:
        out = self._out
        with self._lock:
            if record not in out:
                return
            out.remove(record)
            if len(out) < self._limit:
                self._armed = True

    def _warn(self, checked_out: int) -> None:
        assert self._capacity is not None
        assert self._threshold is not None
        self._tracker.count_exhaustion()
        _pool_log.warning(
            "connection pool of engine %r nearly exhausted: %d of %d connections checked out "
            "(threshold %.0f%%)",
            self.name,
            checked_out,
            self._capacity,
            self._threshold * 100,
        )
        if self._tracker.has_listeners("pool_exhausted"):
            record = PoolExhaustedEvent(
                self.name, checked_out, self._capacity, self._threshold
            )
            self._tracker.emit("pool_exhausted", record)

    def stats(self) -> EngineStats:
        """The pool's figures now."""
        with self._lock:
            checked_out = len(self._out)
        capacity = self._capacity
        return EngineStats(
            size=self._size,
            checked_out=checked_out,
            overflow=_overflow(self._engine.pool),
            capacity=capacity,
            utilisation=None if capacity is None else checked_out / capacity,
        )
