"""
The decision core: what to do after a failed attempt. Pure and I/O-free.

The sync and async shells (``_transactional.py``) never branch on error types or policy
fields; they ask :func:`decide` and :func:`must_invalidate` and act on the answer. Everything
here is exercised without a database in ``tests/test_decide.py``.

The only state touched is the policy's :class:`~txpolicy.RetryBudget` (a token is spent when,
and only when, a retry is granted) and the call's :class:`~txpolicy._policy.Backoff`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import attrs

from ._exceptions import ErrorCategory, TransactionError

if TYPE_CHECKING:
    from ._policy import Backoff, RetryPolicy

__all__ = [
    "CheckVerdict",
    "GiveUp",
    "GiveUpReason",
    "Retry",
    "check_verdict",
    "decide",
    "escalates",
    "is_ambiguous",
    "is_retryable_in_scope",
    "must_invalidate",
    "not_committed",
]

GiveUpReason = Literal["not_retryable", "attempts", "deadline", "stop", "budget"]
CheckVerdict = Literal["committed", "not_committed", "unknown"]

_INVALIDATING = frozenset(
    {ErrorCategory.CONNECTION, ErrorCategory.READ_ONLY, ErrorCategory.COMMIT_UNKNOWN}
)


@attrs.frozen
class Retry:
    """Run another attempt after *delay* seconds."""

    delay: float


@attrs.frozen
class GiveUp:
    """Raise the error; *reason* says why no further attempt is made."""

    reason: GiveUpReason


def effective_category(error: TransactionError) -> ErrorCategory:
    """
    The category that decides: the classifier's.

    Which connection failures raised by COMMIT leave its outcome unknown is the classifier's
    call (``_errors.mark_during_commit``): most become ``COMMIT_UNKNOWN``, but a session the
    server ended while it sat idle (PostgreSQL 25P03, MySQL 4031, …) stays ``CONNECTION``
    with ``during_commit=True``: COMMIT never ran, the rollback is definite.
    """
    return error.category


def is_retryable_in_scope(
    retry_on: frozenset[ErrorCategory],
    error: TransactionError,
    *,
    idempotent: bool,
    read_only: bool,
) -> bool:
    """
    Whether the scope may retry *error* at all (before attempts, deadline and budget).

    ``COMMIT_UNKNOWN`` (and a connection lost during COMMIT) only when the scope is idempotent,
    whatever *retry_on* says; ``READ_ONLY`` never in a scope declared read-only (retrying
    cannot help a write that the scope itself forbade).
    """
    category = effective_category(error)
    if category is ErrorCategory.COMMIT_UNKNOWN:
        return idempotent
    if category is ErrorCategory.READ_ONLY and read_only:
        return False
    return category in retry_on


def must_invalidate(error: TransactionError) -> bool:
    """Whether the connection that met *error* must leave the pool (the retry reconnects)."""
    return effective_category(error) in _INVALIDATING


def decide(
    policy: RetryPolicy,
    error: TransactionError,
    *,
    attempt: int,
    elapsed: float,
    idempotent: bool,
    read_only: bool,
    backoff: Backoff,
) -> Retry | GiveUp:
    """
    Decide what follows failed attempt number *attempt* (1-based).

    Args:
        policy: The scope's policy.
        error: The classified error of the failed attempt.
        attempt: The number of the attempt that failed.
        elapsed: Seconds since the first attempt started (monotonic clock).
        idempotent: Whether the scope was declared idempotent.
        read_only: Whether the scope was declared read-only.
        backoff: The call's backoff state; :meth:`Backoff.failed` must have been called for
            this attempt.

    Returns:
        :class:`Retry` with the wait to take, or :class:`GiveUp` with the reason. The
        checks run in this order: retryable category, attempts (or the custom ``stop``),
        deadline, budget; a budget token is spent only when a retry is granted.
    """
    if not is_retryable_in_scope(
        policy.retry_on, error, idempotent=idempotent, read_only=read_only
    ):
        return GiveUp("not_retryable")
    if policy.stop is not None:
        delay = backoff.next_wait()
        if backoff.custom_stop():
            return GiveUp("stop")
    else:
        if attempt >= policy.attempts:
            return GiveUp("attempts")
        delay = backoff.next_wait()
        if policy.deadline is not None and elapsed + delay > policy.deadline:
            return GiveUp("deadline")
    budget = policy.budget
    if budget is not None and not budget._try_spend():
        return GiveUp("budget")
    return Retry(delay)


def escalates(policy: RetryPolicy, attempt: int) -> bool:
    """
    Whether attempt number *attempt* (1-based) of a call runs escalated (starvation guard).

    With ``escalate_after=k``, attempts ``k + 1`` and later do: they have lost *k* times, and
    from then on they run alone (see ``_escalation``). Never without ``escalate_after``.
    """
    after = policy.escalate_after
    return after is not None and attempt > after


# --- a COMMIT of unknown outcome ----------------------------------------------------------------


def is_ambiguous(error: TransactionError) -> bool:
    """
    Whether the failed attempt's COMMIT may have happened: what ``verify=`` / a marker settle.

    Only a ``COMMIT_UNKNOWN`` raised by COMMIT itself: the body ran to its end, so its result
    is known too. (A ``COMMIT_UNKNOWN`` raised by a statement of the body never reached COMMIT.)
    """
    return error.during_commit and error.category is ErrorCategory.COMMIT_UNKNOWN


def check_verdict(answer: object) -> CheckVerdict:
    """
    What the answer of a commit check means.

    ``True`` (the marker was found, or ``verify`` said so): the COMMIT happened. ``False``: it
    did not, the attempt is a definite failure. Anything else (the exception the check
    raised, or a ``verify`` that returned a non-bool such as ``None``): the outcome stays
    unknown. Truthiness is not enough: a forgotten ``return`` must not read as "not committed"
    and run the body twice.
    """
    if answer is True:
        return "committed"
    if answer is False:
        return "not_committed"
    return "unknown"


def not_committed(error: TransactionError) -> TransactionError:
    """
    The error of an attempt whose lost COMMIT was checked and did not happen.

    A connection failure (``ConnectionError``, ``during_commit=True``, the same codes and
    original exception): the rollback is now definite, so the policy retries it as it retries
    any connection loss — its ``retry_on``, attempts, deadline and budget apply.
    """
    from ._exceptions import ConnectionError as _ConnectionError  # noqa: PLC0415 - failure path

    return _ConnectionError(
        error.message,
        sqlstate=error.sqlstate,
        vendor_code=error.vendor_code,
        dialect=error.dialect,
        original=error.original,
        during_commit=True,
        attempts=error.attempts,
    )
