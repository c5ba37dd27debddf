"""
Per-function statistics: calls, attempts, retries by category and time spent waiting.

Each decorated function owns one :class:`StatisticsRecorder`, reachable from its binding.
The shared scope core (``_scopes``) tells it about each retry as it is decided and about each
call when it is over; readers take a :class:`TransactionStatistics` snapshot. One lock guards
the counters, so no increment is lost under threads and a snapshot is consistent
(tenacity's per-call ``statistics`` dict is neither; tenacity #613).
"""

from __future__ import annotations

import collections
import threading
import types
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ._exceptions import ErrorCategory

__all__ = ["StatisticsRecorder", "TransactionStatistics", "get_statistics"]


def _frozen_counts(counts: Mapping[ErrorCategory, int]) -> Mapping[ErrorCategory, int]:
    """A read-only copy that answers 0 for a category that was never retried."""
    return types.MappingProxyType(collections.Counter(counts))


def _counts_repr(counts: Mapping[ErrorCategory, int]) -> str:
    """``{'deadlock': 2}`` rather than the proxy of a Counter of enum members."""
    return repr({category.value: count for category, count in counts.items()})


@attrs.frozen
class TransactionStatistics:
    """
    What the calls of one decorated function have cost so far: a snapshot that never changes.

    Only calls that ran their own transaction count; a call that joined an enclosing
    transaction is part of the owner's. Retries and waits are counted when they happen, calls
    when they finish, so a snapshot taken while a call is retrying already shows its retries.

    Attributes:
        calls: Calls that have finished, whether they committed or raised.
        failures: Calls that raised.
        attempts: Attempts made by the finished calls (one per call when nothing failed).
        retries_by_category: Retries, by the category of the error that caused them; a
            category that was never retried reads 0.
        waited: Seconds spent sleeping between attempts (none in testing mode).
        escalations: Attempts that ran escalated (``RetryPolicy.escalate_after``), counted
            when the retry that leads to them is decided.

    .. versionadded:: 0.1.0
    """

    calls: int = 0
    failures: int = 0
    attempts: int = 0
    retries_by_category: Mapping[ErrorCategory, int] = attrs.field(
        factory=dict, converter=_frozen_counts, hash=False, repr=_counts_repr
    )
    waited: float = 0.0
    escalations: int = 0

    @property
    def retries(self) -> int:
        """All retries, whatever their category."""
        return sum(self.retries_by_category.values())

    @property
    def successes(self) -> int:
        """Calls that committed."""
        return self.calls - self.failures


class StatisticsRecorder:
    """
    The thread-safe accumulator behind a decorated function's ``statistics`` attribute.

    Calling it returns a :class:`TransactionStatistics` snapshot.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_attempts", "_calls", "_escalations", "_failures", "_lock", "_retries", "_waited")

    def __init__(self) -> None:
        # One lock rather than atomic tricks: an uncontended acquire costs ~50 ns, the
        # counters stay exact on free-threaded builds too, and a snapshot is consistent.
        self._lock = threading.Lock()
        self._calls = 0
        self._failures = 0
        self._attempts = 0
        self._retries: collections.Counter[ErrorCategory] = collections.Counter()
        self._waited = 0.0
        self._escalations = 0

    def record_call(self, attempts: int, *, failed: bool) -> None:
        """A call that owned its transaction is over, after *attempts* attempts."""
        with self._lock:
            self._calls += 1
            self._attempts += attempts
            if failed:
                self._failures += 1

    def record_retry(self, category: ErrorCategory, wait: float) -> None:
        """A failed attempt of *category* will be retried after sleeping *wait* seconds."""
        with self._lock:
            self._retries[category] += 1
            self._waited += wait

    def record_escalation(self) -> None:
        """The next attempt of a call will run escalated."""
        with self._lock:
            self._escalations += 1

    def snapshot(self) -> TransactionStatistics:
        """A consistent copy of the counters."""
        with self._lock:
            return TransactionStatistics(
                calls=self._calls,
                failures=self._failures,
                attempts=self._attempts,
                retries_by_category=self._retries,
                waited=self._waited,
                escalations=self._escalations,
            )

    __call__ = snapshot

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            self._calls = self._failures = self._attempts = 0
            self._retries = collections.Counter()
            self._waited = 0.0
            self._escalations = 0

    def __repr__(self) -> str:
        return f"<StatisticsRecorder {self.snapshot()!r}>"


def get_statistics(func: Callable[..., object]) -> TransactionStatistics:
    """
    The statistics of a function decorated with :func:`txpolicy.transactional`.

    The same as ``func.statistics()``, but typed: the decorator's return type does not show
    the ``statistics`` attribute to type checkers.

    Args:
        func: The decorated function (sync or async).

    Returns:
        A snapshot of its counters.

    Raises:
        TypeError: *func* was not decorated by ``transactional()``.

    .. versionadded:: 0.1.0
    """
    recorder = getattr(func, "statistics", None)
    if not isinstance(recorder, StatisticsRecorder):
        raise TypeError(f"{func!r} is not a function decorated with transactional()")
    return recorder.snapshot()
