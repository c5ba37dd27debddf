"""
Attempt records, user hooks and logging: what a retrying scope tells the outside world.

Nothing here runs on the path where nothing fails, except one attribute read to learn whether
anyone listens for ``"success"``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import attrs

if TYPE_CHECKING:
    from ._binds import BindAdapter
    from ._exceptions import ErrorCategory

__all__ = ["AttemptRecord", "HookEvent", "add_hook", "dispatch", "log_escalation", "logger"]

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


class _Hooks:
    """The registered user hooks, one immutable tuple per event (copy on write)."""

    __slots__ = ("give_up", "lock", "retry", "success")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.retry: tuple[Hook, ...] = ()
        self.give_up: tuple[Hook, ...] = ()
        self.success: tuple[Hook, ...] = ()


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


def _log(record: AttemptRecord) -> None:
    """One logging record per retry and per give-up, with structured ``extra`` fields."""
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
    elif record.event == "give_up":
        # A non-retryable error (a constraint violation, a syntax error) is the caller's
        # business, not an operational event: log it quietly.
        log = logger.debug if record.reason == "not_retryable" else logger.warning
        log(
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
