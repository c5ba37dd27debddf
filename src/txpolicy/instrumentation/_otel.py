"""
OpenTelemetry: a span per transaction, an event per retry, and counters.

Built on the attempt hooks (``txpolicy._hooks``): nothing is registered until
:func:`enable_opentelemetry` is called, and ``opentelemetry`` is imported only then, so a
process that never enables it (or has no OpenTelemetry installed) pays nothing.

The hooks report attempts, not the start of a transaction, so the span is recorded when the
transaction ends, with its real start time (``elapsed`` before the final record) and the
retry events at the moments they happened. It is a child of the span that is current where
the transaction runs (a request, a job); it is not itself current while the body runs, so
statement spans (from SQLAlchemy's instrumentation) are its siblings, not its children.
Retry events wait in a ``ContextVar`` (per thread and per task) until their transaction
ends; a transaction claims those with its own operation name that happened after it began.
"""

from __future__ import annotations

import contextvars
import importlib.metadata
import threading
import time
from typing import TYPE_CHECKING, Any

from .._decide import effective_category
from .._exceptions import ErrorCategory, TransactionError
from .._hooks import add_hook

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._hooks import AttemptRecord

__all__ = ["disable_opentelemetry", "enable_opentelemetry", "is_opentelemetry_enabled"]

_SCOPE = "txpolicy"
_MAX_PENDING = 64  # retry events of transactions that never ended (a KeyboardInterrupt)

# (operation, time in ns since the epoch, event attributes), oldest first.
_Pending = tuple[str, int, dict[str, Any]]
_PENDING: contextvars.ContextVar[tuple[_Pending, ...]] = contextvars.ContextVar(
    "txpolicy_otel_pending", default=()
)


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


class _Instrumentation:
    """The tracer, the instruments and the three hooks that feed them."""

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

    def on_retry(self, record: AttemptRecord) -> None:
        """Count the retry and keep its event for the span of its transaction."""
        operation = record.operation
        attributes = _code_attributes(record)
        self.retries.add(1, {"txpolicy.operation": operation, **attributes})
        if _is_ambiguous(record):
            self.ambiguous.add(1, {"txpolicy.operation": operation})
        attributes["txpolicy.attempt"] = record.attempt
        attributes["txpolicy.wait"] = record.wait
        pending = _PENDING.get()[-_MAX_PENDING + 1 :]
        _PENDING.set((*pending, (operation, time.time_ns(), attributes)))

    def on_success(self, record: AttemptRecord) -> None:
        """The transaction committed."""
        self._end(record, {"txpolicy.outcome": "committed"}, error=None)

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
        """Record the finished transaction's span, with the retry events that are its own."""
        operation = record.operation
        end = time.time_ns()
        start = end - int(record.elapsed * 1e9)
        mine: list[_Pending] = []
        others: list[_Pending] = []
        for pending in _PENDING.get():
            (mine if pending[0] == operation and pending[1] >= start else others).append(pending)
        if mine:
            _PENDING.set(tuple(others))
        attributes["txpolicy.operation"] = operation
        attributes["txpolicy.attempts"] = record.attempt
        span = self._tracer.start_span(operation, start_time=start, attributes=attributes)
        for _, timestamp, event in mine:
            span.add_event("txpolicy.retry", event, timestamp=timestamp)
        if error is not None:
            span.record_exception(error, timestamp=end)
            span.set_status(self._error_status(str(error) or type(error).__name__))
        span.end(end_time=end)
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

    Every transactional scope (decorated call, ``attempts()`` block, context manager) is
    recorded as one span named after its operation (the decorated function's
    ``__qualname__`` or the scope's ``operation_type``) with the attributes
    ``txpolicy.operation``, ``txpolicy.attempts`` and ``txpolicy.outcome`` (``committed`` or
    ``gave_up``; then also ``txpolicy.reason``, ``txpolicy.category``, ``txpolicy.sqlstate``
    / ``txpolicy.vendor_code``, ``error.type``, an exception event and an error status). Each
    retry adds a ``txpolicy.retry`` event with ``txpolicy.category``, ``txpolicy.sqlstate`` /
    ``txpolicy.vendor_code``, ``txpolicy.attempt`` and ``txpolicy.wait`` (seconds).

    Instruments (meter ``txpolicy``): the counters ``txpolicy.transaction.attempts``,
    ``.retries`` (by category), ``.give_ups`` (by category and reason) and
    ``.ambiguous_commits``, and the histogram ``txpolicy.transaction.duration`` (seconds).

    Calling it again replaces the previous providers. It costs nothing until it is called;
    once enabled, every transaction pays for one attempt record and one span.

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
                add_hook("retry", instrumentation.on_retry),
                add_hook("give_up", instrumentation.on_give_up),
                add_hook("success", instrumentation.on_success),
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
