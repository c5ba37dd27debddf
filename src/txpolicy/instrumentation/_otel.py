"""
OpenTelemetry: a live span per transaction, an event per retry, and counters.

Built on the scope hook and the ``"retry"`` / ``"give_up"`` attempt hooks
(``txpolicy._hooks``): nothing is registered until :func:`enable_opentelemetry` is called,
and ``opentelemetry`` is imported only then, so a process that never enables it (or has no
OpenTelemetry installed) pays nothing.

The scope hook starts the transaction's span with ``start_as_current_span`` when the
transaction begins and ends it when the transaction ends, so the span is current while the
body runs and across the retries: spans started inside the body (SQLAlchemy's or psycopg's
instrumentation, the application's own) are its children. The attempt hooks, which run
inside it, add the retry events and, on a give-up, the error's attributes and status; a
transaction that leaves its scope without an error committed. A ``ContextVar`` (per thread
and per task) points at the innermost transaction span, so that a record annotates its own
transaction's span even when the body left another span current.
"""

from __future__ import annotations

import contextvars
import importlib.metadata
import threading
import time
from typing import TYPE_CHECKING, Any

from .._decide import effective_category
from .._exceptions import ErrorCategory, TransactionError
from .._hooks import add_hook, add_scope_hook

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager
    from types import TracebackType

    from .._hooks import AttemptRecord

__all__ = ["disable_opentelemetry", "enable_opentelemetry", "is_opentelemetry_enabled"]

_SCOPE = "txpolicy"


def _code_attributes(record: AttemptRecord) -> dict[str, Any]:
    """Category, SQLSTATE and vendor code of a failed attempt (absent values left out)."""
    attributes: dict[str, Any] = {}
    if record.category is not None:
        attributes["txpolicy.category"] = record.category.value
    if record.sqlstate is not None:
        attributes["txpolicy.sqlstate"] = record.sqlstate
    if record.vendor_code is not None:
        attributes["txpolicy.vendor_code"] = str(record.vendor_code)
    return attributes


def _is_ambiguous(record: AttemptRecord) -> bool:
    """Whether the attempt's COMMIT may or may not have taken effect."""
    error = record.error
    if isinstance(error, TransactionError):
        return effective_category(error) is ErrorCategory.COMMIT_UNKNOWN
    return record.category is ErrorCategory.COMMIT_UNKNOWN


class _TransactionSpan:
    """
    The scope hook's context manager: the transaction's span, current while it runs.

    It counts the retries of its transaction; leaving it without an error means the
    transaction committed (no ``"success"`` record is needed for that, so the path where
    nothing fails builds none). A give-up is settled by its record, which carries the
    category, the reason and the attempts.
    """

    __slots__ = (
        "_instrumentation",
        "_manager",
        "_started",
        "_token",
        "operation",
        "retries",
        "settled",
        "span",
    )

    def __init__(
        self,
        instrumentation: _Instrumentation,
        manager: AbstractContextManager[Any],
        operation: str,
    ) -> None:
        self._instrumentation = instrumentation
        self._manager = manager  # tracer.start_as_current_span(...)
        self._token: contextvars.Token[_TransactionSpan | None] | None = None
        self._started = 0.0
        self.operation = operation
        self.retries = 0
        self.settled = False  # a "give_up" record has set the outcome
        self.span: Any = None

    def __enter__(self) -> Any:
        self.span = self._manager.__enter__()
        self._token = _CURRENT.set(self)
        self._started = time.monotonic()
        return self.span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _CURRENT.reset(self._token)
            self._token = None
        if not self.settled:
            if exc is None:
                self._instrumentation.committed(self, time.monotonic() - self._started)
            elif isinstance(exc, Exception):
                # No record settled it: not a database error (the body's own exception).
                # As for start_as_current_span itself, only Exception subclasses are errors.
                self._instrumentation.failed(self, exc)
        self._manager.__exit__(None, None, None)


# The innermost transaction span of this thread or task.
_CURRENT: contextvars.ContextVar[_TransactionSpan | None] = contextvars.ContextVar(
    "txpolicy_otel_transaction", default=None
)


def _span_of(record: AttemptRecord) -> _TransactionSpan | None:
    """The live span of the transaction *record* belongs to (none if enabled meanwhile)."""
    current = _CURRENT.get()
    if current is not None and current.operation == record.operation:
        return current
    return None


class _Instrumentation:
    """The tracer, the instruments, the scope hook and the two hooks that feed them."""

    def __init__(self, tracer: Any, meter: Any, error_status: Callable[[str], Any]) -> None:
        self._tracer = tracer
        self._error_status = error_status
        self.attempts = meter.create_counter(
            "txpolicy.transaction.attempts",
            unit="{attempt}",
            description="Transaction attempts, counted when the transaction ends.",
        )
        self.retries = meter.create_counter(
            "txpolicy.transaction.retries",
            unit="{retry}",
            description="Failed attempts that were retried, by error category.",
        )
        self.give_ups = meter.create_counter(
            "txpolicy.transaction.give_ups",
            unit="{transaction}",
            description="Transactions that raised a database error, by category and reason.",
        )
        self.ambiguous = meter.create_counter(
            "txpolicy.transaction.ambiguous_commits",
            unit="{commit}",
            description="COMMITs whose outcome is unknown (the connection was lost).",
        )
        self.duration = meter.create_histogram(
            "txpolicy.transaction.duration",
            unit="s",
            description="Time from the first attempt's start to the commit or the give-up.",
        )

    def scope(self, operation: str) -> _TransactionSpan:
        """The scope hook: the transaction's span, started when it begins."""
        manager = self._tracer.start_as_current_span(
            operation,
            attributes={"txpolicy.operation": operation},
            record_exception=False,  # the records (or _TransactionSpan) say what failed
            set_status_on_exception=False,
        )
        return _TransactionSpan(self, manager, operation)

    def on_retry(self, record: AttemptRecord) -> None:
        """Count the retry and add its event to the span of its transaction."""
        operation = record.operation
        attributes = _code_attributes(record)
        self.retries.add(1, {"txpolicy.operation": operation, **attributes})
        if _is_ambiguous(record):
            self.ambiguous.add(1, {"txpolicy.operation": operation})
        transaction = _span_of(record)
        if transaction is not None:
            transaction.retries += 1
            attributes["txpolicy.attempt"] = record.attempt
            attributes["txpolicy.wait"] = record.wait
            transaction.span.add_event("txpolicy.retry", attributes)

    def committed(self, transaction: _TransactionSpan, elapsed: float) -> None:
        """The transaction's scope was left without an error: it committed."""
        attempts = transaction.retries + 1
        transaction.span.set_attributes(
            {"txpolicy.outcome": "committed", "txpolicy.attempts": attempts}
        )
        labels = {"txpolicy.operation": transaction.operation, "txpolicy.outcome": "committed"}
        self.attempts.add(attempts, labels)
        self.duration.record(elapsed, labels)

    def failed(self, transaction: _TransactionSpan, error: Exception) -> None:
        """The body raised an exception that is not a database error (nothing is counted)."""
        span = transaction.span
        span.set_attributes({"txpolicy.outcome": "error", "error.type": type(error).__name__})
        span.record_exception(error)
        span.set_status(self._error_status(str(error) or type(error).__name__))

    def on_give_up(self, record: AttemptRecord) -> None:
        """The transaction raised its (classified) error."""
        attributes = _code_attributes(record)
        reason = record.reason or "unknown"
        self.give_ups.add(
            1, {"txpolicy.operation": record.operation, "txpolicy.reason": reason, **attributes}
        )
        if _is_ambiguous(record):
            self.ambiguous.add(1, {"txpolicy.operation": record.operation})
        attributes["txpolicy.outcome"] = "gave_up"
        attributes["txpolicy.reason"] = reason
        if record.error is not None:
            attributes["error.type"] = type(record.error).__name__
        self._end(record, attributes, error=record.error)

    def _end(
        self, record: AttemptRecord, attributes: dict[str, Any], error: BaseException | None
    ) -> None:
        """Settle the transaction's span (it ends with the scope) and count the transaction."""
        operation = record.operation
        transaction = _span_of(record)
        if transaction is not None:
            transaction.settled = True
            span = transaction.span
            attributes["txpolicy.attempts"] = record.attempt
            span.set_attributes(attributes)
            if error is not None:
                span.record_exception(error)
                span.set_status(self._error_status(str(error) or type(error).__name__))
        labels = {
            "txpolicy.operation": operation,
            "txpolicy.outcome": attributes["txpolicy.outcome"],
        }
        self.attempts.add(record.attempt, labels)
        self.duration.record(record.elapsed, labels)


_LOCK = threading.Lock()
_removers: list[Callable[[], None]] = []


def enable_opentelemetry(*, tracer_provider: Any = None, meter_provider: Any = None) -> bool:
    """
    Emit an OpenTelemetry span per transaction, an event per retry, and counters.

    Every transaction (decorated call, ``attempts()`` block, ``with transactional(...)``;
    joined and savepoint scopes are part of their owner's) is one span named after its
    operation (the decorated function's ``__qualname__`` or the scope's
    ``operation_type``). The span starts when the transaction begins and ends when it does,
    and it is the current span meanwhile: spans started in the body, by SQLAlchemy's or a
    driver's instrumentation or by the application, are its children, and it is itself a
    child of the span current where the transaction runs. Its attributes are
    ``txpolicy.operation``, ``txpolicy.attempts`` and ``txpolicy.outcome``: ``committed``;
    ``gave_up`` (a database error was raised: then also ``txpolicy.reason``,
    ``txpolicy.category``, ``txpolicy.sqlstate`` / ``txpolicy.vendor_code``, ``error.type``,
    an exception event and an error status); or ``error`` (the body raised an exception that
    is not a database error: ``error.type``, an exception event and an error status). Each
    retry adds a ``txpolicy.retry`` event with ``txpolicy.category``, ``txpolicy.sqlstate`` /
    ``txpolicy.vendor_code``, ``txpolicy.attempt`` and ``txpolicy.wait`` (seconds).

    Instruments (meter ``txpolicy``): the counters ``txpolicy.transaction.attempts``,
    ``.retries`` (by category), ``.give_ups`` (by category and reason) and
    ``.ambiguous_commits``, and the histogram ``txpolicy.transaction.duration`` (seconds).

    Calling it again replaces the previous providers (a transaction already running keeps
    the span it started with). It costs nothing until it is called; once enabled, every
    transaction pays for one span (and each failed attempt for one record). It is built on
    :func:`~txpolicy.instrumentation.add_scope_hook` and :func:`~txpolicy.add_hook`.

    Args:
        tracer_provider: The provider to use; the global one when ``None``.
        meter_provider: The provider to use; the global one when ``None``.

    Returns:
        ``True``; ``False`` (and nothing is enabled) when ``opentelemetry-api`` is not
        installed (``pip install txpolicy[otel]``).

    .. versionadded:: 0.1.0
    """
    try:
        from opentelemetry import metrics, trace  # noqa: PLC0415 - optional, imported on demand
    except ImportError:
        return False
    version = importlib.metadata.version("txpolicy")
    tracer = trace.get_tracer(_SCOPE, version, tracer_provider=tracer_provider)
    meter = metrics.get_meter(_SCOPE, version, meter_provider=meter_provider)
    instrumentation = _Instrumentation(
        tracer, meter, lambda text: trace.Status(trace.StatusCode.ERROR, text)
    )
    with _LOCK:
        _remove_hooks()
        _removers.extend(
            [
                add_scope_hook(instrumentation.scope),
                add_hook("retry", instrumentation.on_retry),
                add_hook("give_up", instrumentation.on_give_up),
            ]
        )
    return True


def disable_opentelemetry() -> None:
    """
    Stop emitting spans and counters (a no-op when they are not enabled).

    .. versionadded:: 0.1.0
    """
    with _LOCK:
        _remove_hooks()


def is_opentelemetry_enabled() -> bool:
    """
    Whether :func:`enable_opentelemetry` is in force.

    .. versionadded:: 0.1.0
    """
    return bool(_removers)


def _remove_hooks() -> None:
    """Unregister the current hooks (the caller holds the lock)."""
    while _removers:
        _removers.pop()()
