"""
Seeing what transactions do: OpenTelemetry spans and counters, per-function statistics.

- :func:`enable_opentelemetry` records a span per transaction (current while the transaction
  runs, so statement spans are its children), an event per retry and counters (attempts,
  retries by category, give-ups, ambiguous commits); OpenTelemetry is imported only when it
  is called (install ``txpolicy[otel]``).
- :func:`add_scope_hook` enters a context manager of your own around every transaction
  (a tracing span of another library, a logging context), as :func:`enable_opentelemetry`
  does.
- :func:`get_statistics` reads the counters every function decorated with
  :func:`txpolicy.transactional` keeps: calls, attempts, retries by category and time spent
  waiting (also ``func.statistics()``).
"""

from __future__ import annotations

from .._hooks import add_scope_hook
from .._stats import TransactionStatistics, get_statistics
from ._otel import disable_opentelemetry, enable_opentelemetry, is_opentelemetry_enabled

__all__ = [
    "TransactionStatistics",
    "add_scope_hook",
    "disable_opentelemetry",
    "enable_opentelemetry",
    "get_statistics",
    "is_opentelemetry_enabled",
]
