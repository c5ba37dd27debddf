"""
Attempt records, user hooks, scope hooks and logging: what a scope tells the outside world.

Nothing here runs on the path where nothing fails, except two attribute reads: whether anyone
listens for ``"success"``, and whether a scope hook (:func:`add_scope_hook`) is registered.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Literal

import attrs

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

    from ._binds import BindAdapter
    from ._exceptions import ErrorCategory

__all__ = [
    "AttemptRecord",
    "HookEvent",
    "ScopeHooks",
    "add_hook",
    "add_scope_hook",
    "dispatch",
    "log_escalation",
    "logger",
    "wanted",
]

HookEvent = Literal["retry", "give_up", "success"]
_EVENTS: tuple[HookEvent, ...] = ("retry", "give_up", "success")

logger = logging.getLogger("txpolicy.retry")
"""
One record per retry (INFO), per escalated attempt (INFO) and per give-up (WARNING; DEBUG for
errors that are never retried); nothing when nothing fails.
"""

_hook_logger = logging.getLogger("txpolicy.hooks")


@attrs.frozen
class AttemptRecord:
    """
    What happened to one attempt of a transactional call, handed to hooks and listeners.

    Attributes:
        event: ``"retry"`` (the attempt failed and another follows), ``"give_up"`` (the
            attempt failed and its error is raised) or ``"success"`` (the attempt committed).
        operation: The operation name: the scope's ``operation_type``, else the decorated
            function's ``__qualname__``, else ``"transactional"``.
        attempt: The number of the attempt (1-based).
        category: The error's category (``None`` for a success).
        sqlstate: The error's SQLSTATE, when it has one.
        vendor_code: The error's vendor code (MySQL errno, SQLite extended code, …).
        wait: Seconds until the next attempt (``0.0`` unless *event* is ``"retry"``).
        elapsed: Seconds since the first attempt began.
        error: The classified error (``None`` for a success).
        reason: Why the scope gave up: ``"not_retryable"``, ``"attempts"``, ``"deadline"``,
            ``"stop"`` or ``"budget"`` (``None`` unless *event* is ``"give_up"``).
        escalated: Whether the attempt ran escalated: it came after ``escalate_after``
            failed attempts of the call and ran alone (see :class:`~txpolicy.RetryPolicy`).

    .. versionadded:: 0.1.0
    """

    event: HookEvent
    operation: str
    attempt: int
    category: ErrorCategory | None
    sqlstate: str | None
    vendor_code: int | str | None
    wait: float
    elapsed: float
    error: BaseException | None
    reason: str | None = None
    escalated: bool = False


Hook = Callable[[AttemptRecord], object]
ScopeHook = Callable[[str], AbstractContextManager[object]]


class _Hooks:
    """The registered user hooks, one immutable tuple per event (copy on write)."""

    __slots__ = ("give_up", "lock", "retry", "scope", "success")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.retry: tuple[Hook, ...] = ()
        self.give_up: tuple[Hook, ...] = ()
        self.success: tuple[Hook, ...] = ()
        self.scope: tuple[ScopeHook, ...] = ()


HOOKS = _Hooks()


def add_hook(event: HookEvent, callback: Callable[[AttemptRecord], object]) -> Callable[[], None]:
    """
    Call *callback* with an :class:`AttemptRecord` on every *event* of every scope.

    ``"retry"`` and ``"give_up"`` fire on failed attempts; ``"success"`` fires once per call
    that committed (registering one costs every call a record, so prefer the other two). Hooks
    run synchronously in the thread or task of the scope, after the logging record; a hook that
    raises is logged and never breaks the transaction.

    Args:
        event: ``"retry"``, ``"give_up"`` or ``"success"``.
        callback: Receives the record; its return value is ignored.

    Returns:
        A function that removes the hook (calling it twice is harmless).

    Raises:
        ValueError: Unknown *event*.
        TypeError: *callback* is not callable.

    .. versionadded:: 0.1.0
    """
    if event not in _EVENTS:
        raise ValueError(f"unknown hook event {event!r}; expected one of {_EVENTS}")
    if not callable(callback):
        raise TypeError(f"hook callback must be callable, got {callback!r}")
    with HOOKS.lock:
        setattr(HOOKS, event, (*getattr(HOOKS, event), callback))

    def remove() -> None:
        with HOOKS.lock:
            current: tuple[Hook, ...] = getattr(HOOKS, event)
            if callback in current:
                index = current.index(callback)
                setattr(HOOKS, event, current[:index] + current[index + 1 :])

    return remove


def add_scope_hook(
    factory: Callable[[str], AbstractContextManager[object]],
) -> Callable[[], None]:
    """
    Enter ``factory(operation)`` around every transaction, while it runs.

    The context manager it returns is entered when a transaction begins (before its first
    attempt) and exited when it ends (after the commit, or when its error leaves the scope),
    in the thread or task of the scope, so whatever it makes current (an OpenTelemetry span,
    a log context) is current in the body and across its retries. It wraps every attempt
    and wait of a decorated call or of an :func:`~txpolicy.attempts` block, and the single
    attempt of ``with transactional(...)``; joined and savepoint scopes are part of the
    transaction that owns them and enter nothing. The ``"retry"``, ``"give_up"`` and
    ``"success"`` hooks (:func:`~txpolicy.add_hook`) of a transaction run inside it.

    Its ``__exit__`` receives the error that leaves the scope (the classified one for
    database errors), or ``None``; its return value is ignored (it cannot swallow the
    error). A factory or context manager that raises is logged and never breaks the
    transaction. Async scopes enter the same (sync) context manager. While none is
    registered, a scope pays one attribute read.

    Args:
        factory: Called with the operation name (the scope's ``operation_type``, else the
            decorated function's ``__qualname__``); returns a context manager.

    Returns:
        A function that removes the hook (calling it twice is harmless).

    Raises:
        TypeError: *factory* is not callable.

    .. versionadded:: 0.1.0
    """
    if not callable(factory):
        raise TypeError(f"scope hook factory must be callable, got {factory!r}")
    with HOOKS.lock:
        HOOKS.scope = (*HOOKS.scope, factory)

    def remove() -> None:
        with HOOKS.lock:
            current = HOOKS.scope
            if factory in current:
                index = current.index(factory)
                HOOKS.scope = current[:index] + current[index + 1 :]

    return remove


class ScopeHooks:
    """
    The scope hooks of one transaction: entered with :meth:`enter`, left once with :meth:`exit`.

    The shells build one only when ``HOOKS.scope`` is not empty.
    """

    __slots__ = ("_entered", "_operation")

    def __init__(self, operation: str) -> None:
        self._operation = operation
        self._entered: list[AbstractContextManager[object]] = []

    def enter(self) -> Self:
        """Enter every registered hook's context manager (one that fails is logged, skipped)."""
        for factory in HOOKS.scope:
            try:
                manager = factory(self._operation)
                manager.__enter__()
            except Exception:  # noqa: PERF203 - each one is isolated from the others
                _hook_logger.exception("txpolicy scope hook %r failed on entry", factory)
            else:
                self._entered.append(manager)
        return self

    def exit(self, error: BaseException | None) -> None:
        """Leave them, innermost first, with the error that leaves the scope; idempotent."""
        entered, self._entered = self._entered, []
        while entered:
            manager = entered.pop()
            try:
                if error is None:
                    manager.__exit__(None, None, None)
                else:
                    manager.__exit__(type(error), error, error.__traceback__)
            except Exception:
                _hook_logger.exception("txpolicy scope hook %r failed on exit", manager)

    def __enter__(self) -> Self:
        return self.enter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.exit(exc)


def _level(event: str, reason: str | None) -> int:
    """The logging level of an attempt record (0: not logged)."""
    if event == "retry":
        return logging.INFO
    if event == "give_up":
        # A non-retryable error (a constraint violation, a syntax error) is the caller's
        # business, not an operational event: log it quietly.
        return logging.DEBUG if reason == "not_retryable" else logging.WARNING
    return 0  # success: never logged


def wanted(adapter_listens: bool, event: HookEvent, reason: str | None) -> bool:
    """Whether anyone would see an attempt record: the adapter, a user hook or the logger."""
    if adapter_listens or getattr(HOOKS, event):
        return True
    level = _level(event, reason)
    return bool(level) and logger.isEnabledFor(level)


def _log(record: AttemptRecord) -> None:
    """One logging record per retry and per give-up, with structured ``extra`` fields."""
    level = _level(record.event, record.reason)
    if not level or not logger.isEnabledFor(level):
        return
    code = record.sqlstate if record.sqlstate is not None else record.vendor_code
    extra = {
        "txpolicy_event": record.event,
        "txpolicy_operation": record.operation,
        "txpolicy_attempt": record.attempt,
        "txpolicy_category": None if record.category is None else record.category.value,
        "txpolicy_sqlstate": record.sqlstate,
        "txpolicy_vendor_code": record.vendor_code,
        "txpolicy_wait": record.wait,
        "txpolicy_reason": record.reason,
    }
    category = record.category.value if record.category is not None else "?"
    if record.event == "retry":
        logger.info(
            "retrying %s after attempt %d failed with %s (code %s); waiting %.3f s",
            record.operation,
            record.attempt,
            category,
            code,
            record.wait,
            extra=extra,
        )
    else:
        logger.log(
            level,
            "giving up on %s after attempt %d failed with %s (code %s): %s",
            record.operation,
            record.attempt,
            category,
            code,
            record.reason,
            extra=extra,
        )


def log_escalation(operation: str, attempt: int, escalate_after: int | None) -> None:
    """One INFO record per escalated attempt, announced before it starts."""
    logger.info(
        "escalating %s: attempt %d runs alone after %s failed attempts (escalate_after)",
        operation,
        attempt,
        escalate_after,
        extra={
            "txpolicy_event": "escalate",
            "txpolicy_operation": operation,
            "txpolicy_attempt": attempt,
        },
    )


def dispatch(adapter: BindAdapter, record: AttemptRecord) -> None:
    """Log *record*, hand it to the bind's adapter, then to the user hooks; never raises."""
    _log(record)
    try:
        adapter.emit(record.event, record)
    except Exception:
        _hook_logger.exception("txpolicy bind listener failed on %r", record.event)
    hooks: tuple[Hook, ...] = getattr(HOOKS, record.event)
    for hook in hooks:
        try:
            hook(record)
        except Exception:  # noqa: PERF203 - each one is isolated from the others
            _hook_logger.exception("txpolicy hook %r failed on %r", hook, record.event)
