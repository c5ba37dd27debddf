"""
Retry policies and retry budgets: immutable values, validated when they are built.

Backoff is computed by tenacity, but tenacity objects are an implementation detail: they are built
lazily, after the first failure of a call (:class:`Backoff`), and never returned from public API.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from typing import Any, Literal

import attrs
import tenacity as _t

from ._exceptions import DEFAULT_RETRY_ON, ErrorCategory

__all__ = ["Backoff", "RetryBudget", "RetryPolicy"]

Jitter = Literal["full", "none"]


def _positive_int(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """Reject non-integers (including bools) and values below 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{attribute.name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{attribute.name} must be >= 1, got {value!r}")


def _optional_positive_int(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """Like :func:`_positive_int`, but ``None`` is allowed."""
    if value is not None:
        _positive_int(inst, attribute, value)


def _seconds(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A finite, non-negative number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{attribute.name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


def _deadline(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """``None``, or a positive number of seconds (``math.inf`` is allowed)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{attribute.name} must be a number of seconds or None, got {value!r}")
    if math.isnan(value) or value <= 0:
        raise ValueError(f"{attribute.name} must be > 0 or None, got {value!r}")


def _to_categories(value: object) -> frozenset[ErrorCategory]:
    """Convert ``retry_on`` to a frozenset, refusing anything that is not an ErrorCategory."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"retry_on must be an iterable of ErrorCategory, got {value!r}")
    items = list(value)
    for item in items:
        if not isinstance(item, ErrorCategory):
            raise TypeError(f"retry_on items must be ErrorCategory members, got {item!r}")
    return frozenset(items)


def _jitter(_inst: object, _attribute: attrs.Attribute[Any], value: object) -> None:
    """Only the two jitter modes the contract names."""
    if value not in ("full", "none"):
        raise ValueError(f"jitter must be 'full' or 'none', got {value!r}")


def _instance_or_none(cls: type, name: str) -> Any:
    """An attrs validator: ``None`` or an instance of *cls* (a clear TypeError otherwise)."""

    def check(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None and not isinstance(value, cls):
            raise TypeError(f"{attribute.name} must be a {name} or None, got {value!r}")

    return check


@attrs.define(eq=False)
class RetryBudget:
    """
    A token bucket that stops retry storms (gRPC retry throttling, Finagle's ``RetryBudget``).

    The bucket starts full. Every successful call whose policy holds the budget adds
    *token_ratio* tokens (up to *max_tokens*); every retry spends one token; while the bucket
    holds ``max_tokens / 2`` tokens or fewer, no retry is allowed: the call raises its
    classified error at once, with ``retry_refused_by_budget = True`` set on it, and
    :attr:`refused` counts it. Share one budget between every call that talks to the same
    database (put it in the policy of a ``Database`` or of every scope on a bind), so that a
    deadlock storm or a failover cannot multiply the load on the database.

    Thread-safe; the counters are exact under concurrency.

    Args:
        max_tokens: Capacity of the bucket (> 0).
        token_ratio: Tokens earned per successful call (> 0, at most *max_tokens*).

    .. versionadded:: 0.1.0
    """

    max_tokens: float = attrs.field(default=10.0)
    token_ratio: float = attrs.field(default=0.1)
    _tokens: float = attrs.field(init=False)
    _retries: int = attrs.field(init=False, default=0)
    _refused: int = attrs.field(init=False, default=0)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock, repr=False)

    @max_tokens.validator
    def _check_max_tokens(self, attribute: attrs.Attribute[Any], value: object) -> None:
        _seconds(self, attribute, value)
        if value == 0:
            raise ValueError("max_tokens must be > 0")

    @token_ratio.validator
    def _check_token_ratio(self, attribute: attrs.Attribute[Any], value: object) -> None:
        _seconds(self, attribute, value)
        if value == 0 or value > self.max_tokens:  # type: ignore[operator]
            raise ValueError(f"token_ratio must be > 0 and <= max_tokens, got {value!r}")

    def __attrs_post_init__(self) -> None:
        self._tokens = float(self.max_tokens)

    @property
    def tokens(self) -> float:
        """The tokens in the bucket now."""
        return self._tokens

    @property
    def retries(self) -> int:
        """How many retries the budget allowed."""
        return self._retries

    @property
    def refused(self) -> int:
        """How many retries the budget refused."""
        return self._refused

    def _deposit(self) -> None:
        """A call succeeded: earn *token_ratio* tokens, up to the capacity."""
        with self._lock:
            self._tokens = min(self.max_tokens, self._tokens + self.token_ratio)

    def _try_spend(self) -> bool:
        """Spend one token for a retry, or refuse (and count) when the bucket is half empty."""
        with self._lock:
            if self._tokens <= self.max_tokens / 2:
                self._refused += 1
                return False
            self._tokens -= 1
            self._retries += 1
            return True


@attrs.frozen
class RetryPolicy:
    """
    How a transactional scope retries: an immutable value; make variants with ``attrs.evolve``.

    Backoff is full-jitter exponential by default: the wait before retry *n* (after failed
    attempt *n*) is uniform in ``[0, min(wait_max, wait_initial * 2 ** (n - 1))]``, computed by
    tenacity's ``wait_random_exponential``; with ``jitter="none"`` it is the cap itself
    (``wait_exponential``).

    Args:
        attempts: Total attempts, >= 1 (1 means no retry).
        wait_initial: Seconds; the cap of the first wait.
        wait_max: Seconds; the cap of every wait, jitter included (>= *wait_initial*).
        jitter: ``"full"`` or ``"none"``.
        deadline: Total seconds across all attempts and waits, or ``None``. It is checked
            before each wait: a wait that would cross it is not taken, and the last error is
            raised instead. A running attempt is not interrupted (use the scope's
            ``lock_timeout`` / ``statement_timeout`` for that).
        retry_on: The :class:`ErrorCategory` members that are retried (stored as a
            frozenset). ``COMMIT_UNKNOWN`` is retried only in idempotent scopes, whatever this
            says, and ``READ_ONLY`` never in a scope declared ``read_only=True``.
        budget: A :class:`RetryBudget` shared by every call whose policy holds it, or ``None``.
        escalate_after: Failed attempts after which the next attempt escalates (starvation
            guard), or ``None``. With *k*, attempts ``k + 1`` and later of a call run alone:
            every owner attempt on the bind passes an in-process turnstile, an escalated one
            waits (before BEGIN) for the attempts already running and makes new ones wait for
            it, and on PostgreSQL it also holds a transaction-scoped advisory lock keyed on the
            URL, so escalated transactions of all processes run one at a time. Attempts that
            do not escalate run no extra statement. See "Heavy contention" in the docs.
        wait: Escape hatch: a tenacity ``wait`` object that replaces the computed backoff
            (used as is: *wait_initial*, *wait_max* and *jitter* are ignored).
        stop: Escape hatch: a tenacity ``stop`` object that replaces the *attempts* and
            *deadline* stop conditions. It is consulted after a failure with tenacity's usual
            retry state (``attempt_number``, ``seconds_since_start``, ``upcoming_sleep``).

    Raises:
        TypeError: A value of the wrong type.
        ValueError: A value out of range.

    .. versionadded:: 0.1.0
    """

    attempts: int = attrs.field(default=5, validator=_positive_int)
    wait_initial: float = attrs.field(default=0.05, validator=_seconds)
    wait_max: float = attrs.field(default=2.0, validator=_seconds)
    jitter: Jitter = attrs.field(default="full", validator=_jitter)
    deadline: float | None = attrs.field(default=30.0, validator=_deadline)
    retry_on: frozenset[ErrorCategory] = attrs.field(
        default=DEFAULT_RETRY_ON, converter=_to_categories
    )
    budget: RetryBudget | None = attrs.field(
        default=None, validator=_instance_or_none(RetryBudget, "RetryBudget")
    )
    escalate_after: int | None = attrs.field(default=None, validator=_optional_positive_int)
    wait: _t.wait.wait_base | None = attrs.field(
        default=None, validator=_instance_or_none(_t.wait.wait_base, "tenacity wait object")
    )
    stop: _t.stop.stop_base | None = attrs.field(
        default=None, validator=_instance_or_none(_t.stop.stop_base, "tenacity stop object")
    )

    @wait_max.validator
    def _check_wait_max(self, _attribute: attrs.Attribute[Any], value: float) -> None:
        if value < self.wait_initial:
            raise ValueError(
                f"wait_max ({value!r}) must be >= wait_initial ({self.wait_initial!r})"
            )


DEFAULT_POLICY = RetryPolicy()
"""The policy of scopes that name none and whose bind has no default."""


# The tenacity wait object of each policy (they are stateless): a policy's calls share one.
# Keyed by id; the entry holds the policy, so that the id cannot be reused while it is cached.
_WAITS: dict[int, tuple[RetryPolicy, _t.wait.wait_base]] = {}


def _wait_of(policy: RetryPolicy) -> _t.wait.wait_base:
    """The wait object that computes *policy*'s backoff (built once per policy)."""
    cached = _WAITS.get(id(policy))
    if cached is not None and cached[0] is policy:
        return cached[1]
    wait: _t.wait.wait_base
    if policy.wait is not None:
        wait = policy.wait
    elif policy.jitter == "full":
        wait = _t.wait_random_exponential(multiplier=policy.wait_initial, max=policy.wait_max)
    else:
        wait = _t.wait_exponential(multiplier=policy.wait_initial, max=policy.wait_max)
    if len(_WAITS) >= 256:  # policies made on the fly: keep the cache bounded
        _WAITS.clear()
    _WAITS[id(policy)] = (policy, wait)
    return wait


class Backoff:
    """
    The retry state of one call, built after its first failure only.

    Holds tenacity's wait object and a ``RetryCallState`` that is kept up to date, so that the
    escape-hatch ``wait`` / ``stop`` objects see what they expect. The built-in waits only
    read the attempt number, so the failed attempt's outcome (a tenacity ``Future``, which
    builds a lock) is only recorded for an escape-hatch object.
    """

    __slots__ = ("_custom", "_policy", "_state", "_wait")

    def __init__(self, policy: RetryPolicy, start: float) -> None:
        self._policy = policy
        self._wait = _wait_of(policy)
        self._custom = policy.wait is not None or policy.stop is not None
        self._state = _t.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        self._state.start_time = start

    def failed(self, attempt: int, error: BaseException, now: float) -> None:
        """Record that *attempt* failed with *error* at monotonic time *now*."""
        state = self._state
        state.attempt_number = attempt
        state.outcome_timestamp = now
        if self._custom:
            future = _t.Future(attempt)
            future.set_exception(error)
            state.outcome = future

    def next_wait(self) -> float:
        """The wait before the next attempt (tenacity's computation), never negative."""
        wait = max(0.0, float(self._wait(self._state)))
        self._state.upcoming_sleep = wait
        return wait

    def custom_stop(self) -> bool:
        """The escape-hatch ``stop`` object's verdict (``True``: stop)."""
        stop = self._policy.stop
        assert stop is not None
        return bool(stop(self._state))

    def slept(self, seconds: float) -> None:
        """Account for a wait actually taken (tenacity's ``idle_for``)."""
        self._state.idle_for += seconds

    def skipped(self, seconds: float) -> None:
        """Account for a wait taken in virtual time (testing mode): as if slept, clock included."""
        self._state.start_time -= seconds
        self._state.idle_for += seconds
