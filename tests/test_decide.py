"""The decision core, exhaustively and without a database: retry or give up, and why."""

from __future__ import annotations

import itertools

import pytest
import tenacity

from txpolicy import ErrorCategory, RetryBudget, RetryPolicy
from txpolicy._decide import (
    GiveUp,
    Retry,
    decide,
    effective_category,
    is_retryable_in_scope,
    must_invalidate,
)
from txpolicy._exceptions import CATEGORY_CLASSES, DEFAULT_RETRY_ON
from txpolicy._policy import Backoff

C = ErrorCategory
NO_JITTER = RetryPolicy(wait_initial=0.1, wait_max=1.0, jitter="none", deadline=None)


def error(category: ErrorCategory, *, during_commit: bool = False):
    """A classified error of *category*, as the classifier builds them."""
    return CATEGORY_CLASSES[category]("boom", during_commit=during_commit)


def run(policy, err, *, attempt=1, elapsed=0.0, idempotent=False, read_only=False):
    """decide() after *attempt* failed, with a fresh backoff fed the failures so far."""
    backoff = Backoff(policy, start=0.0)
    for number in range(1, attempt + 1):
        backoff.failed(number, err, now=elapsed)
    return decide(
        policy,
        err,
        attempt=attempt,
        elapsed=elapsed,
        idempotent=idempotent,
        read_only=read_only,
        backoff=backoff,
    )


def expected_retryable(category, *, idempotent, read_only, during_commit):
    """The contract's table, restated independently of the implementation."""
    if category is C.COMMIT_UNKNOWN:
        return idempotent
    if category is C.READ_ONLY and read_only:
        return False
    return category in {C.DEADLOCK, C.SERIALIZATION, C.LOCK_TIMEOUT, C.CONNECTION, C.READ_ONLY,
                        C.RESOURCE}


CASES = [
    pytest.param(category, idempotent, read_only, during_commit, id=f"{category.value}"
                 f"{'-idempotent' if idempotent else ''}{'-read_only' if read_only else ''}"
                 f"{'-during_commit' if during_commit else ''}")
    for category, idempotent, read_only, during_commit in itertools.product(
        list(ErrorCategory), [False, True], [False, True], [False, True]
    )
]


@pytest.mark.parametrize(("category", "idempotent", "read_only", "during_commit"), CASES)
def test_every_category_and_scope_option(category, idempotent, read_only, during_commit):
    """13 categories × idempotent × read_only × during_commit against the contract's table."""
    err = error(category, during_commit=during_commit)
    retryable = expected_retryable(
        category, idempotent=idempotent, read_only=read_only, during_commit=during_commit
    )

    decision = run(NO_JITTER, err, idempotent=idempotent, read_only=read_only)

    assert (Retry(0.1) if retryable else GiveUp("not_retryable")) == decision


@pytest.mark.parametrize("category", list(ErrorCategory))
def test_retry_on_decides_for_every_category_but_commit_unknown(category):
    """An empty retry_on retries nothing; COMMIT_UNKNOWN follows idempotency alone."""
    policy = RetryPolicy(retry_on=(), deadline=None)
    everything = RetryPolicy(retry_on=list(ErrorCategory), deadline=None)
    err = error(category)

    assert category is C.COMMIT_UNKNOWN or not is_retryable_in_scope(
        policy.retry_on, err, idempotent=True, read_only=False
    )
    assert (category is not C.COMMIT_UNKNOWN) == is_retryable_in_scope(
        everything.retry_on, err, idempotent=False, read_only=False
    )


@pytest.mark.parametrize("category", list(ErrorCategory))
def test_connections_are_invalidated_for_connection_read_only_and_commit_unknown(category):
    """Only those three leave the pool; a connection loss during COMMIT counts as unknown."""
    expected = category in {C.CONNECTION, C.READ_ONLY, C.COMMIT_UNKNOWN}

    assert expected == must_invalidate(error(category))
    assert expected == must_invalidate(error(category, during_commit=True))


def test_the_classifiers_category_decides_also_at_commit():
    """
    A CONNECTION error that the classifier left CONNECTION at COMMIT (a session the server
    ended while idle, 25P03) is a definite rollback: retried. Connection losses with an
    unknown outcome reach decide() as COMMIT_UNKNOWN, retried only when idempotent.
    """
    idle_ended = error(C.CONNECTION, during_commit=True)
    unknown = error(C.COMMIT_UNKNOWN, during_commit=True)

    assert C.CONNECTION == effective_category(idle_ended)
    assert Retry(0.1) == run(NO_JITTER, idle_ended)
    assert GiveUp("not_retryable") == run(NO_JITTER, unknown)
    assert Retry(0.1) == run(NO_JITTER, unknown, idempotent=True)


@pytest.mark.parametrize(("attempts", "failed"), [(1, 1), (3, 2), (3, 3), (5, 4), (5, 5)])
def test_attempts_bound_the_retries(attempts, failed):
    """After attempt n fails, retry iff n < attempts; the waits double without jitter."""
    policy = RetryPolicy(attempts=attempts, wait_initial=0.1, wait_max=10, jitter="none")

    decision = run(policy, error(C.DEADLOCK), attempt=failed)

    if failed < attempts:
        assert Retry(0.1 * 2 ** (failed - 1)) == decision
    else:
        assert GiveUp("attempts") == decision


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [
        pytest.param(0.0, Retry(0.4), id="well-before"),
        pytest.param(0.6, Retry(0.4), id="wait-ends-on-the-deadline"),
        pytest.param(0.61, GiveUp("deadline"), id="wait-would-cross"),
        pytest.param(2.0, GiveUp("deadline"), id="already-past"),
    ],
)
def test_deadline_refuses_a_wait_that_would_cross_it(elapsed, expected):
    """elapsed + wait > deadline gives up; landing exactly on it is allowed."""
    policy = RetryPolicy(attempts=10, wait_initial=0.1, wait_max=10, jitter="none", deadline=1.0)

    assert expected == run(policy, error(C.SERIALIZATION), attempt=3, elapsed=elapsed)


def test_full_jitter_waits_are_random_within_the_cap():
    """The decision's delay is uniform in [0, cap] for full jitter."""
    policy = RetryPolicy(wait_initial=0.2, wait_max=1.0, deadline=None)
    delays = {run(policy, error(C.DEADLOCK), attempt=2).delay for _ in range(100)}

    assert all(0 <= delay <= 0.4 for delay in delays)
    assert len(delays) > 50


def test_budget_is_consulted_last_and_spends_only_on_a_retry():
    """Not-retryable and out-of-attempts decisions leave the bucket alone; a refusal counts."""
    budget = RetryBudget(max_tokens=2, token_ratio=0.1)
    policy = RetryPolicy(attempts=2, budget=budget, wait_initial=0, wait_max=0)

    not_retryable = run(policy, error(C.INTEGRITY))
    exhausted = run(policy, error(C.DEADLOCK), attempt=2)
    granted = run(policy, error(C.DEADLOCK))
    refused = run(policy, error(C.DEADLOCK))

    assert (GiveUp("not_retryable"), GiveUp("attempts")) == (not_retryable, exhausted)
    assert (Retry(0.0), GiveUp("budget")) == (granted, refused)
    assert (1, 1, 1.0) == (budget.retries, budget.refused, budget.tokens)


def test_custom_stop_replaces_attempts_and_deadline():
    """A tenacity stop object decides alone; the custom wait is used as is."""
    policy = RetryPolicy(
        attempts=1,
        deadline=0.001,
        wait=tenacity.wait_fixed(3),
        stop=tenacity.stop_after_attempt(3),
    )

    assert Retry(3.0) == run(policy, error(C.DEADLOCK), attempt=1, elapsed=5.0)
    assert Retry(3.0) == run(policy, error(C.DEADLOCK), attempt=2, elapsed=5.0)
    assert GiveUp("stop") == run(policy, error(C.DEADLOCK), attempt=3, elapsed=5.0)


def test_stop_before_delay_sees_the_upcoming_sleep():
    """tenacity's stop_before_delay works: it reads upcoming_sleep and seconds_since_start."""
    policy = RetryPolicy(wait=tenacity.wait_fixed(1), stop=tenacity.stop_before_delay(2.5))

    assert Retry(1.0) == run(policy, error(C.DEADLOCK), attempt=1, elapsed=1.0)
    assert GiveUp("stop") == run(policy, error(C.DEADLOCK), attempt=2, elapsed=2.0)


def test_default_retry_on_matches_the_contract():
    """The six "yes" rows of the table."""
    assert {C.DEADLOCK, C.SERIALIZATION, C.LOCK_TIMEOUT, C.CONNECTION, C.READ_ONLY,
            C.RESOURCE} == DEFAULT_RETRY_ON
