"""
The shared, I/O-free core of transactional scopes.

A *binding* (:class:`Binding`) is what ``transactional()`` / ``attempts()`` resolve once: the
adapter, the validated options and the policy. A *scope record* (:class:`Scope`) describes one
active scope of one thread or task; the records of a thread or task live in a ``ContextVar``
as an immutable tuple, innermost last. The sync and async shells (``_sync.py``, ``_async.py``)
perform the I/O and consult this module for everything else: which scope to join, which
statements to run, what a failure means and whether to retry (through ``_decide``).

Propagation is per thread and per task: each record stores its *owner* (the running asyncio
task, else the thread id), and a record whose owner is not the caller is invisible to it. That
is what keeps a thread or task started inside a scope (contextvars are copied into both) from
joining it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Literal

from . import _context, _errors
from ._binds import (
    BindAdapter,
    EscalationLock,
    JoinConflict,
    ScopeSpec,
    Statement,
    begin_statements,
    end_statements,
    escalation_lock,
    execution_options,
    is_plain,
)
from ._config import CONFIG
from ._decide import (
    Retry,
    check_verdict,
    decide,
    escalates,
    is_ambiguous,
    is_retryable_in_scope,
    must_invalidate,
    not_committed,
)
from ._escalation import Gate, gate_for, lock_key
from ._exceptions import ConfigurationError, ContextIsolationError, TransactionError
from ._hooks import HOOKS, AttemptRecord, ScopeHooks, dispatch, log_escalation, wanted
from ._policy import Backoff, RetryPolicy
from ._stats import StatisticsRecorder

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Sequence

__all__ = ["OWNER", "SCOPES", "Binding", "Run", "Scope"]

logger = logging.getLogger("txpolicy.transaction")

OWNER, JOINED, NESTED = 0, 1, 2

_SCOPES: ContextVar[tuple[Scope, ...]] = ContextVar("txpolicy_scopes", default=())
SCOPES = _SCOPES  # the shells test it before calling find_outer()
_get_running_loop = asyncio.events._get_running_loop
_current_task = asyncio.current_task
_get_ident = threading.get_ident
monotonic = time.monotonic


def current_owner() -> object:
    """The running asyncio task, else the thread: the unit that may join a scope."""
    loop = _get_running_loop()
    if loop is None:
        return _get_ident()
    task = _current_task(loop)
    return _get_ident() if task is None else task


class Binding:
    """Everything fixed when a scope is built: adapter, options, policy, names."""

    __slots__ = (
        "adapter",
        "checks",
        "dialect",
        "explicit_context",
        "fixed",
        "gate",
        "idempotent",
        "is_async",
        "key",
        "operation",
        "plain",
        "plain_adapter",
        "policy",
        "propagation",
        "quiet",
        "read_only",
        "resolve_context",
        "spec",
        "statements_for",
        "stats",
        "yields",
    )

    def __init__(
        self, adapter: BindAdapter, spec: ScopeSpec, policy: RetryPolicy | None, operation: str
    ) -> None:
        from ._policy import DEFAULT_POLICY  # noqa: PLC0415 - avoids an import cycle at load

        self.adapter = adapter
        self.spec = spec
        self.key: Hashable = adapter.key
        self.is_async: bool = adapter.is_async
        self.yields = adapter.yields
        self.policy: RetryPolicy = policy or adapter.default_policy or DEFAULT_POLICY
        self.operation = operation
        self.propagation = spec.propagation
        self.read_only = spec.read_only
        self.idempotent = spec.idempotent
        # verify= or commit_marker=: each owner call carries a Check (read once per call).
        self.checks = spec.verify is not None or spec.commit_marker is not None
        # escalate_after: every owner attempt passes the bind's gate (``_escalation``).
        self.gate: Gate | None = (
            None if self.policy.escalate_after is None else gate_for(adapter.key)
        )
        self.resolve_context: Callable[[Any], Any] | None = getattr(
            adapter, "resolve_context", None
        )
        self.stats: StatisticsRecorder | None = None  # decorated functions only
        self.explicit_context = spec.user_context
        # What an attempt needs that depends only on the dialect (see fixed_for()), cached
        # for the last dialect seen: one identity check per attempt instead of rebuilding it.
        self.fixed: Fixed | None = None
        # The dialect of every resource the adapter opens, when the adapter knows it is fixed
        # (a Database's engine); else it is looked up per attempt (a sessionmaker may be
        # reconfigured).
        self.dialect: Any = getattr(adapter, "dialect", None)
        self.statements_for: Callable[[str], bool] | None = getattr(
            adapter, "has_statements", None
        )
        # Plain SQLAlchemy binds with no options need no statement and no dialect lookup.
        self.plain_adapter = is_plain(adapter)
        self.plain = (
            self.plain_adapter
            and spec.isolation_level is None
            and not spec.read_only
            and spec.lock_timeout is None
            and spec.statement_timeout is None
        )
        # Whether an attempt has nothing to do between open() and the body: plain binds, and
        # binds of a known dialect that gets no options and no statements (a Database on
        # SQLite). The shells then skip the dialect lookup altogether.
        if self.dialect is not None:
            self.fixed = Fixed(self, self.dialect)
        self.quiet = self.plain or (
            self.fixed is not None and self.fixed.options is None and not self.fixed.statements
        )

    def context(self) -> Any:
        """The user context the scope runs under (the adapter may add the ambient one)."""
        explicit = self.spec.user_context
        if self.resolve_context is None:
            return explicit
        return self.resolve_context(explicit)

    def with_operation(self, operation: str) -> Binding:
        """A copy for a decorated function (its name becomes the default operation type)."""
        import attrs  # noqa: PLC0415 - only at decoration time

        spec = self.spec
        if spec.operation_type is None:
            spec = attrs.evolve(spec, operation_type=operation)
        binding = Binding(self.adapter, spec, self.policy, spec.operation_type or operation)
        binding.stats = StatisticsRecorder()
        return binding


class Run:
    """The retry state of one owner call, created at its first failure."""

    __slots__ = ("attempt", "backoff", "delay", "escalated", "start")

    def __init__(self, policy: RetryPolicy, start: float) -> None:
        self.start = start
        self.attempt = 1
        self.delay = 0.0
        self.escalated = False  # whether attempt number ``attempt`` runs escalated
        self.backoff = Backoff(policy, start)

    def skip(self) -> None:
        """
        Testing mode: take the wait in virtual time instead of sleeping.

        The call's clock is moved back by the wait, so the deadline and tenacity's ``stop``
        objects decide exactly as they would have after a real sleep.
        """
        self.start -= self.delay
        self.backoff.skipped(self.delay)


class Scope:
    """
    One active scope of one thread or task.

    Only what differs from the class-level defaults is set per instance: on the path where
    nothing fails a record costs four attribute writes (no ``__slots__``, no reference cycle:
    ``txn`` is ``None`` for the scope that owns its transaction level, see :func:`transaction_of`).
    """

    resource: Any = None
    txn: Scope | None = None  # the owner / savepoint scope a joined scope belongs to
    parent: Scope | None = None
    savepoint: Any = None
    callbacks: list[Callable[[], Any]] | None = None
    failure: BaseException | None = None
    token: Token[tuple[Scope, ...]] | None = None
    context_token: Token[Any] | None = None
    context: Any = None
    iso: str | None = None
    read_only: bool = False
    during_commit: bool = False
    teardown: tuple[Statement, ...] = ()
    dialect_name: str | None = None
    timeouts: ScopeSpec | None = None
    attempt: int = 1
    start: float = 0.0
    run: Run | None = None
    check: Check | None = None  # owner scopes of a bind with verify= / commit_marker=
    escalated: bool = False  # the attempt runs alone (``escalate_after``)
    gate_token: object = None  # set once it passed its bind's gate (left in :func:`pop`)
    hooks: ScopeHooks | None = None  # the scope hooks of ``with transactional(...)``, if any

    def __init__(self, binding: Binding, kind: int, owner: object) -> None:
        self.binding = binding
        self.kind = kind
        self.owner = owner


def transaction_of(scope: Scope) -> Scope:
    """The scope that owns *scope*'s transaction level (itself unless it joined one)."""
    return scope.txn or scope


# --- the per-thread / per-task stack -------------------------------------------------------


def find_outer(binding: Binding) -> Scope | None:
    """The innermost scope of this thread or task on the same bind, unless we need a new one."""
    scopes = _SCOPES.get()
    if not scopes or binding.propagation == "requires_new":
        return None
    owner = current_owner()
    key = binding.key
    for scope in reversed(scopes):
        other = scope.binding.key
        if scope.owner == owner and (other is key or other == key):
            return scope
    return None


def innermost() -> Scope | None:
    """The innermost scope of this thread or task, on any bind."""
    scopes = _SCOPES.get()
    if not scopes:
        return None
    owner = current_owner()
    for scope in reversed(scopes):
        if scope.owner == owner:
            return scope
    return None


def push(scope: Scope) -> None:
    """
    Make *scope* the innermost one of this thread or task.

    A scope given its own ``user_context=`` also binds it (``txpolicy.user_context``) for its
    body, so that what the body opens runs for the same user.
    """
    scope.token = _SCOPES.set((*_SCOPES.get(), scope))
    explicit = scope.binding.explicit_context
    if explicit is not None:
        scope.context_token = _context._CURRENT.set(explicit)


def pop(scope: Scope) -> None:
    """Remove *scope* (idempotent); an owner attempt also leaves the escalation gate here."""
    token = scope.token
    if token is not None:
        scope.token = None
        context_token = scope.context_token
        if context_token is not None:
            scope.context_token = None
            _context._CURRENT.reset(context_token)
        _SCOPES.reset(token)
    gate_token = scope.gate_token
    if gate_token is not None:
        scope.gate_token = None
        gate = scope.binding.gate
        assert gate is not None
        gate.leave(gate_token)


def must_pass_gate(scope: Scope) -> bool:
    """
    Whether the owner attempt *scope* must pass its bind's gate: not if a scope around it did.

    Scopes of this thread or task, and of the scope a task was started in (contextvars are
    copied into tasks): waiting for an escalated attempt that itself waits for the enclosing
    attempt to finish would never end.
    """
    gate = scope.binding.gate
    if gate is None:
        return False
    for other in _SCOPES.get():
        if other.gate_token is not None and other.binding.gate is gate:
            return False
    return True


def escalated_above() -> bool:
    """
    Whether an escalated attempt encloses this one, so that this one must not escalate.

    In this thread or task, or the one that started this task: an inner attempt that waited
    for the escalation lock its own enclosing transaction holds would wait for ever.
    """
    return any(scope.escalated for scope in _SCOPES.get())


def top_of_stack(binding: Binding) -> Scope:
    """The scope a context manager is leaving: the innermost one, checked."""
    scope = innermost()
    if scope is None or scope.binding is not binding:
        raise RuntimeError("txpolicy scopes were exited out of order, or in another task")
    return scope


# --- creating records -----------------------------------------------------------------------


def new_owner(binding: Binding, run: Run | None) -> Scope:
    """The record of the next attempt of an owner scope, pushed; no I/O yet."""
    # current_owner() and push(), inlined: this runs once per call on the path where
    # nothing fails.
    loop = _get_running_loop()
    if loop is None:
        owner: object = _get_ident()
    else:
        task = _current_task(loop)
        owner = _get_ident() if task is None else task
    scope = Scope(binding, OWNER, owner)
    scope.token = _SCOPES.set((*_SCOPES.get(), scope))
    if binding.explicit_context is not None:
        scope.context_token = _context._CURRENT.set(binding.explicit_context)
    if run is None:
        scope.start = monotonic()
    else:
        scope.run = run
        scope.attempt = run.attempt
        scope.start = run.start
        scope.escalated = run.escalated
    if not binding.plain:
        spec = binding.spec
        resolve = binding.resolve_context  # Binding.context(), inlined
        explicit = binding.explicit_context
        scope.context = explicit if resolve is None else resolve(explicit)
        scope.iso = spec.isolation_level
        scope.read_only = spec.read_only
        scope.timeouts = spec
    return scope


def new_inside(binding: Binding, outer: Scope) -> Scope:
    """
    The record of a joined or savepoint scope inside *outer* (not pushed yet).

    Raises:
        ConfigurationError: Another isolation level, or a read-write scope in a read-only one.
        ContextIsolationError: Another user context.
    """
    if binding.spec.isolation_level is not None and binding.spec.isolation_level != outer.iso:
        raise ConfigurationError(
            f"{binding.operation} asks for isolation level {binding.spec.isolation_level!r} "
            f"but would join a transaction running at {outer.iso or 'the default level'!r}"
        )
    if outer.read_only and not binding.read_only:
        raise ConfigurationError(
            f"{binding.operation} is read-write but would join a read-only transaction"
        )
    context = None if binding.plain else binding.context()
    if context is not None and context != outer.context:
        conflict = JoinConflict(binding.operation, outer.context, context)
        try:
            binding.adapter.emit("context_isolation_violation", conflict)
        except Exception:
            logger.exception("txpolicy bind listener failed on a context isolation violation")
        raise ContextIsolationError(
            f"{binding.operation} runs under {context!r} but would join a transaction of "
            f"{outer.context!r}"
        )
    kind = NESTED if binding.propagation == "nested" else JOINED
    scope = Scope(binding, kind, outer.owner)
    scope.resource = outer.resource
    scope.parent = outer
    scope.context = outer.context
    scope.iso = outer.iso
    scope.read_only = outer.read_only
    scope.dialect_name = outer.dialect_name
    if kind == JOINED:
        scope.txn = transaction_of(outer)
        scope.timeouts = outer.timeouts
    else:
        scope.timeouts = binding.spec if has_timeouts(binding.spec) else outer.timeouts
    return scope


def has_timeouts(spec: ScopeSpec | None) -> bool:
    """Whether *spec* sets a lock or statement timeout."""
    if spec is None:
        return False
    return spec.lock_timeout is not None or spec.statement_timeout is not None


# --- statements -------------------------------------------------------------------------------


class Fixed:
    """What the attempts of one binding need that depends only on the dialect: built once."""

    __slots__ = ("adapter_statements", "begin", "dialect", "end", "name", "options", "statements")

    def __init__(self, binding: Binding, dialect: Any) -> None:
        spec = binding.spec
        name: str = dialect.name
        mariadb = bool(getattr(dialect, "is_mariadb", False))
        self.dialect = dialect
        self.name = name
        self.options = execution_options(name, spec)
        self.begin = begin_statements(name, spec, is_mariadb=mariadb)
        self.end = end_statements(name, spec, is_mariadb=mariadb)
        # Whether to ask the adapter for its statements at each attempt: never for our plain
        # adapters, and not where the adapter says it has none for this dialect.
        has = binding.statements_for
        self.adapter_statements = not binding.plain_adapter and (has is None or has(name))
        # Whether there can be any statement at all (SQLite without timeouts: none).
        self.statements = bool(self.adapter_statements or self.begin or self.end)


def fixed_for(binding: Binding, dialect: Any) -> Fixed:
    """The binding's :class:`Fixed` for *dialect* (cached for the last dialect seen)."""
    fixed = binding.fixed
    if fixed is None or fixed.dialect is not dialect:
        fixed = binding.fixed = Fixed(binding, dialect)
    return fixed


def owner_statements(scope: Scope, dialect: Any) -> Sequence[Statement]:
    """The statements after BEGIN of an owner attempt; records the teardown ones on *scope*."""
    binding = scope.binding
    fixed = fixed_for(binding, dialect)
    name = scope.dialect_name = fixed.name
    if not fixed.adapter_statements:
        if fixed.end:
            scope.teardown = fixed.end
        return fixed.begin
    spec, adapter, context = binding.spec, binding.adapter, scope.context
    setup = adapter.setup_statements(name, spec, context)
    teardown = adapter.teardown_statements(name, spec, context)
    if teardown or fixed.end:
        scope.teardown = (*teardown, *fixed.end)
    return (*fixed.begin, *setup) if fixed.begin else setup


def escalation_statements(
    scope: Scope, dialect: Any
) -> tuple[EscalationLock, tuple[Statement, ...]] | None:
    """
    The cross-process escalation lock of an escalated attempt, and how to wait for it.

    ``None`` where the database has none (see :func:`~txpolicy._binds.escalation_lock`).
    Otherwise the lock and the statements of the waiting transaction: the scope's own
    timeouts first, so that ``lock_timeout`` bounds the wait (a ``LockTimeoutError``, a
    failed attempt like any other), then the wait itself.
    """
    name: str = dialect.name
    resource = scope.resource
    engine = resource.get_bind() if scope.binding.yields == "session" else resource.engine
    lock = escalation_lock(name, lock_key(engine.url))
    if lock is None:
        return None
    wait = (*begin_statements(name, scope.binding.spec, is_mariadb=False), lock.wait)
    return lock, wait


def savepoint_statements(scope: Scope, dialect: Any) -> tuple[Statement, ...]:
    """The statements after SAVEPOINT: the savepoint scope's own timeouts."""
    spec = scope.binding.spec
    if not has_timeouts(spec):
        return ()
    mariadb = bool(getattr(dialect, "is_mariadb", False))
    return begin_statements(dialect.name, spec, is_mariadb=mariadb, savepoint=True)


def after_savepoint(scope: Scope, dialect: Any, *, rolled_back: bool) -> tuple[Statement, ...]:
    """
    What restores the enclosing scope's settings once a savepoint scope ends.

    After ROLLBACK TO SAVEPOINT the bind's setup statements run again (so the user context is
    in force again); when the savepoint scope had timeouts of its own, the enclosing ones are
    re-applied (or, on MySQL, the session defaults restored).
    """
    out: tuple[Statement, ...] = ()
    parent = scope.parent
    assert parent is not None
    owner = transaction_of(parent)
    while owner.kind != OWNER and owner.parent is not None:
        owner = transaction_of(owner.parent)
    mariadb = bool(getattr(dialect, "is_mariadb", False))
    name: str = dialect.name
    if rolled_back and not owner.binding.plain:
        out = tuple(owner.binding.adapter.setup_statements(name, owner.binding.spec, owner.context))
    spec = scope.binding.spec
    if has_timeouts(spec):
        if has_timeouts(parent.timeouts):
            assert parent.timeouts is not None
            out += begin_statements(name, parent.timeouts, is_mariadb=mariadb, savepoint=True)
        else:
            out += end_statements(name, spec, is_mariadb=mariadb)
    return out


# --- failures -------------------------------------------------------------------------------


def classify(scope: Scope, error: BaseException) -> TransactionError | None:
    """The classified error (a COMMIT failure made so), or ``None`` for a non-database error."""
    # Session.commit() flushes first: an error SQLAlchemy raised for a statement (an INSERT
    # of the flush) is the body's, not COMMIT's, whose errors carry no statement.
    if scope.during_commit and getattr(error, "statement", None) is None:
        classified = _errors.classify_error_during_commit(error)
    else:
        classified = _errors.classify_error(error)
    return classified if isinstance(classified, TransactionError) else None


def invalidates(classified: TransactionError | None) -> bool:
    """Whether the connection must leave the pool."""
    return classified is not None and must_invalidate(classified)


def record_failure(scope: Scope, error: BaseException) -> None:
    """Remember on the transaction a failure of a joined scope, so that it never commits."""
    txn = transaction_of(scope)
    if txn.failure is None:
        txn.failure = error


def contain(scope: Scope, raised: BaseException, classified: TransactionError | None) -> None:
    """
    A savepoint scope failed: decide whether its savepoint contains the failure.

    Connection-class, read-only and commit-unknown failures poison the whole transaction (the
    connection is gone or points at the wrong server), so the owner must retry it.
    """
    if invalidates(classified):
        assert scope.parent is not None
        record_failure(scope.parent, raised)


def after_failure(
    scope: Scope, error: BaseException, classified: TransactionError | None, *, retry: bool
) -> Run | BaseException:
    """
    What follows the failed attempt of an owner scope (cleanup already done).

    Returns:
        A :class:`Run` whose ``delay`` is the wait before the next attempt, or the exception
        to raise: *error* itself for a non-database error, else the classified error with
        ``attempts`` set, chained to *error* (``raise ... from error`` made in advance).
    """
    binding = scope.binding
    if classified is None:
        if binding.stats is not None:
            binding.stats.record_call(scope.attempt, failed=True)
        return error
    policy = binding.policy
    now = monotonic()
    elapsed = now - scope.start
    if not retry:
        retryable = is_retryable_in_scope(
            policy.retry_on, classified, idempotent=binding.idempotent, read_only=binding.read_only
        )
        reason = "attempts" if retryable else "not_retryable"
        return chain(_give_up(scope, classified, reason, elapsed), error)
    run = scope.run
    if run is None:
        run = Run(policy, scope.start)
    run.backoff.failed(scope.attempt, classified, now)
    decision = decide(
        policy,
        classified,
        attempt=scope.attempt,
        elapsed=elapsed,
        idempotent=binding.idempotent,
        read_only=binding.read_only,
        backoff=run.backoff,
    )
    if isinstance(decision, Retry):
        run.attempt = scope.attempt + 1
        run.delay = decision.delay
        if binding.stats is not None:
            waits = 0.0 if CONFIG.testing else decision.delay
            binding.stats.record_retry(classified.category, waits)
        _emit(scope, "retry", error=classified, wait=decision.delay, elapsed=elapsed, reason=None)
        run.escalated = escalates(policy, run.attempt) and not escalated_above()
        if run.escalated:
            _escalate(scope, run)
        return run
    return chain(_give_up(scope, classified, decision.reason, elapsed), error)


def _escalate(scope: Scope, run: Run) -> None:
    """Attempt ``run.attempt`` will run escalated: count it, log it, tell the adapter."""
    binding = scope.binding
    if binding.stats is not None:
        binding.stats.record_escalation()
    log_escalation(binding.operation, run.attempt, binding.policy.escalate_after)
    try:
        binding.adapter.emit("escalate", run.attempt)
    except Exception:
        logger.exception("txpolicy bind adapter failed on an escalation")


_REASONS = {
    "attempts": "no attempts left",
    "deadline": "the next wait would cross the deadline",
    "stop": "the policy's stop condition was met",
    "budget": "the retry budget refused the retry",
}


def _give_up(
    scope: Scope, classified: TransactionError, reason: str, elapsed: float
) -> TransactionError:
    """Stamp *classified* with the attempts made (and the reason), and report the give-up."""
    classified.attempts = scope.attempt
    stats = scope.binding.stats
    if stats is not None:
        stats.record_call(scope.attempt, failed=True)
    if reason == "budget":
        setattr(classified, "retry_refused_by_budget", True)  # noqa: B010 - not a declared field
    add_note = getattr(classified, "add_note", None)
    if add_note is not None and reason in _REASONS and (scope.attempt > 1 or reason == "budget"):
        add_note(f"txpolicy: gave up after {scope.attempt} attempt(s): {_REASONS[reason]}")
    _emit(scope, "give_up", error=classified, wait=0.0, elapsed=elapsed, reason=reason)
    return classified


def _emit(
    scope: Scope,
    event: Literal["retry", "give_up", "success"],
    *,
    error: TransactionError | None,
    wait: float,
    elapsed: float,
    reason: str | None,
) -> None:
    """Build the attempt record and hand it to logging, the adapter and the user hooks."""
    binding = scope.binding
    # Plain binds have no listener: with no user hook and the logger off, no one would see it.
    if not wanted(not binding.plain_adapter, event, reason):
        return
    record = AttemptRecord(
        event=event,
        operation=scope.binding.operation,
        attempt=scope.attempt,
        category=None if error is None else error.category,
        sqlstate=None if error is None else error.sqlstate,
        vendor_code=None if error is None else error.vendor_code,
        wait=wait,
        elapsed=elapsed,
        error=error,
        reason=reason,
        escalated=scope.escalated,
    )
    dispatch(scope.binding.adapter, record)


def succeeded(scope: Scope) -> None:
    """Bookkeeping after the final commit: budget tokens and, when wanted, the success record."""
    binding = scope.binding
    if binding.stats is not None:
        binding.stats.record_call(scope.attempt, failed=False)
    budget = binding.policy.budget
    if budget is not None:
        budget._deposit()
    if scope.run is not None or HOOKS.success:
        _emit(
            scope, "success", error=None, wait=0.0, elapsed=monotonic() - scope.start, reason=None
        )


def closed(scope: Scope, resource: Any, *, failed: bool) -> None:
    """Tell the adapter (plain binds track nothing); a failing adapter must not break the scope."""
    if scope.binding.plain_adapter:
        return
    try:
        scope.binding.adapter.closed(resource, failed=failed)
    except Exception:
        logger.exception("txpolicy bind adapter failed in closed()")


def log_cleanup_error(what: str) -> None:
    """A rollback / close / teardown error never masks the error being handled."""
    logger.debug(
        "txpolicy: %s failed during cleanup",
        what,
        exc_info=True,  # noqa: LOG014 - only ever called from an except block
    )


# --- on_commit ------------------------------------------------------------------------------


def is_async_callable(callback: object) -> bool:
    """Coroutine functions, partials of them, and objects with an ``async def __call__``."""
    return inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
        getattr(callback, "__call__", None)  # noqa: B004 - looking for async __call__
    )


def callback_failed(callback: object) -> None:
    """An on_commit callback raised: log it; the result and the other callbacks stand."""
    logger.exception(  # noqa: LOG004 - only ever called from an except block
        "txpolicy on_commit callback %r failed", callback
    )


def merge_callbacks(scope: Scope) -> None:
    """A savepoint scope was released: its callbacks now belong to the enclosing transaction."""
    if scope.callbacks:
        assert scope.parent is not None
        txn = transaction_of(scope.parent)
        if txn.callbacks is None:
            txn.callbacks = []
        txn.callbacks.extend(scope.callbacks)


# --- small helpers shared by the shells -----------------------------------------------------

_TEXT: dict[str, Any] = {}


def text_for(sql: str) -> Any:
    """A cached ``sqlalchemy.text`` clause (statements are few and fixed; values are parameters)."""
    clause = _TEXT.get(sql)
    if clause is None:
        from sqlalchemy import text  # noqa: PLC0415 - off the hot path

        clause = text(sql)
        if len(_TEXT) < 256:
            _TEXT[sql] = clause
    return clause


def dialect_of(resource: Any, yields: str) -> Any:
    """The SQLAlchemy dialect behind a Session / AsyncSession / Connection / AsyncConnection."""
    if yields == "connection":
        return resource.dialect
    return resource.get_bind().dialect


def chain(error: BaseException, cause: BaseException) -> BaseException:
    """``raise error from cause`` made in advance (a no-op when they are the same object)."""
    if error is not cause:
        error.__cause__ = cause
        error.__suppress_context__ = True
    return error


# --- a COMMIT of unknown outcome: verify= and the commit marker --------------------------------


class Check:
    """
    How one owner call finds out whether its lost COMMIT happened; made once per call.

    The marker's key is made here, before the first attempt, so that every attempt of the
    call writes the same key; ``verify`` gets the call's own arguments.
    """

    __slots__ = ("args", "key", "kwargs", "table", "verify")

    def __init__(self, binding: Binding, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        spec = binding.spec
        marker = spec.commit_marker
        self.verify = spec.verify
        self.args = args
        self.kwargs = kwargs
        self.table = None if marker is None else marker.table
        self.key = None if marker is None else marker.make_key(args, kwargs)


def needs_check(scope: Scope, classified: TransactionError | None) -> bool:
    """Whether the failed attempt's COMMIT may have happened and the scope can find out."""
    return scope.check is not None and classified is not None and is_ambiguous(classified)


def marker_statements(scope: Scope) -> tuple[Statement, ...]:
    """The marker INSERT that goes right before COMMIT (none without a marker)."""
    check = scope.check
    if check is None or check.key is None:
        return ()
    from ._markers import insert_statement  # noqa: PLC0415 - only with a marker

    assert check.table is not None
    dialect = dialect_of(scope.resource, scope.binding.yields)
    return (insert_statement(dialect.name, check.table, check.key),)


def probe_statement(check: Check, dialect_name: str) -> Statement:
    """The marker probe of the check transaction."""
    from ._markers import probe_statement as _probe  # noqa: PLC0415 - failure path

    assert check.table is not None
    assert check.key is not None
    return _probe(dialect_name, check.table, check.key)


def check_binding(binding: Binding) -> Binding:
    """
    The binding of the check's transaction: a fresh one-attempt owner on the same bind.

    Same user context, isolation level and timeouts (a ``lock_timeout`` bounds the marker
    probe's wait for the lost transaction); no verify, no marker, never joined.
    """
    import attrs  # noqa: PLC0415 - failure path

    spec = attrs.evolve(
        binding.spec,
        propagation="requires_new",
        idempotent=False,
        verify=None,
        commit_marker=None,
        operation_type=f"{binding.operation} (commit check)",
    )
    return Binding(binding.adapter, spec, binding.policy, spec.operation_type or "")


def after_check(
    scope: Scope,
    error: BaseException,
    classified: TransactionError,
    answer: object,
    *,
    retry: bool,
) -> Run | BaseException | None:
    """
    What follows a COMMIT of unknown outcome once its check answered (cleanup already done).

    Returns:
        ``None`` when the COMMIT happened after all (the call succeeded: the shell runs the
        on_commit callbacks and returns the body's result); otherwise what
        :func:`after_failure` says, for a definite connection failure when the COMMIT did not
        happen, or for the original ``CommitUnknownError`` when the check itself failed
        (its error becomes the ``__context__``).
    """
    verdict = check_verdict(answer)
    how = "the commit marker" if scope.check is not None and scope.check.key else "verify()"
    operation = scope.binding.operation
    if verdict == "committed":
        logger.info(
            "txpolicy: the lost COMMIT of %s (attempt %d) happened, %s says; not run again",
            operation,
            scope.attempt,
            how,
        )
        succeeded(scope)
        return None
    if verdict == "not_committed":
        definite = not_committed(classified)
        _note(definite, f"txpolicy: {how} says the lost COMMIT did not happen")
        return after_failure(scope, error, definite, retry=retry)
    if not isinstance(answer, BaseException):
        answer = TypeError(f"verify() must return True or False, got {answer!r}")
    classified.__context__ = answer
    _note(classified, f"txpolicy: the outcome stays unknown: {how} failed: {answer!r}")
    logger.warning("txpolicy: %s of %s failed: %r", how, operation, answer)
    return after_failure(scope, error, classified, retry=retry)


def _note(error: BaseException, note: str) -> None:
    """``add_note`` where Python has it (3.11+)."""
    add_note = getattr(error, "add_note", None)
    if add_note is not None:
        add_note(note)
