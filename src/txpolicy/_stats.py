"""
Per-function statistics: calls, attempts, retries by category and time spent waiting.

Each decorated function owns one :class:`StatisticsRecorder`. The shells record a call once,
when it is over, with everything they learnt on the way; readers take a
:class:`TransactionStatistics` snapshot. One lock guards the counters, so a snapshot is
consistent and no increment is lost under threads (tenacity's per-call ``statistics`` dict is
neither; tenacity #613).
"""

from __future__ import annotations

import collections
import threading
import types
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from ._exceptions import ErrorCategory

__all__ = ["StatisticsRecorder", "TransactionStatistics"]


def _frozen_counts(counts: Mapping[ErrorCategory, int]) -> Mapping[ErrorCategory, int]:
    """A read-only copy that answers 0 for a category that was never retried."""
    return types.MappingProxyType(collections.Counter(counts))


@attrs.frozen(eq=True, hash=False)
class TransactionStatistics:
    """
    What the calls of one decorated function have cost so far.

    A snapshot: it never changes after it is taken. Take a new one with
    ``func.statistics()`` (or :func:`txpolicy.instrumentation.get_statistics`).

    Attributes:
        calls: Calls that have finished, successfully or not.
        failures: Calls that raised (after their last attempt).
        attempts: Transaction attempts made by those calls (one per call when nothing failed).
        retries_by_category: Retries made, by the category of the error that caused them;
            a category that was never retried reads 0.
        waited: Seconds spent sleeping between attempts.

    .. versionadded:: 0.1.0
    """

    calls: int = 0
    failures: int = 0
    attempts: int = 0
    retries_by_category: Mapping[ErrorCategory, int] = attrs.field(
        factory=dict, converter=_frozen_counts
    )
    waited: float = 0.0

    @property
    def retries(self) -> int:
        """All retries, whatever their category."""
        return sum(self.retries_by_category.values())

    @property
    def successes(self) -> int:
        """Calls that returned normally."""
        return self.calls - self.failures


class StatisticsRecorder:
    """
    The thread-safe accumulator behind a decorated function's ``statistics``.

    Calling it returns a :class:`TransactionStatistics` snapshot.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_attempts", "_calls", "_failures", "_lock", "_retries", "_waited")

    def __init__(self) -> None:
        # One lock rather than atomic tricks: an uncontended acquire costs ~50 ns, the
        # counters stay exact on free-threaded builds too, and a snapshot is consistent.
        self._lock = threading.Lock()
        self._calls = 0
        self._failures = 0
        self._attempts = 0
        self._retries: collections.Counter[ErrorCategory] = collections.Counter()
        self._waited = 0.0

    def record_call(
        self,
        attempts: int = 1,
        retried: Iterable[ErrorCategory] = (),
        waited: float = 0.0,
        *,
        failed: bool = False,
    ) -> None:
        """
        Record one finished call.

        Args:
            attempts: Attempts the call made.
            retried: The category of each failure that was retried, one entry per retry.
            waited: Seconds the call slept between attempts.
            failed: Whether the call raised.
        """
        with self._lock:
            self._calls += 1
            self._attempts += attempts
            if failed:
                self._failures += 1
            if retried:
                self._retries.update(retried)
            if waited:
                self._waited += waited

    def snapshot(self) -> TransactionStatistics:
        """A consistent copy of the counters."""
        with self._lock:
            return TransactionStatistics(
                calls=self._calls,
                failures=self._failures,
                attempts=self._attempts,
                retries_by_category=self._retries,
                waited=self._waited,
            )

    __call__ = snapshot

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            self._calls = self._failures = self._attempts = 0
            self._retries = collections.Counter()
            self._waited = 0.0

    def __repr__(self) -> str:
        return f"<StatisticsRecorder {self.snapshot()!r}>"
