"""RetryPolicy and RetryBudget: values validated at construction, backoff, token bucket."""

from __future__ import annotations

import math
import threading

import attrs
import pytest
import tenacity

from txpolicy import ErrorCategory, RetryBudget, RetryPolicy
from txpolicy._exceptions import DEFAULT_RETRY_ON
from txpolicy._policy import Backoff


def test_defaults_follow_the_contract():
    """Five attempts, 50 ms initial wait, 2 s cap, full jitter, 30 s deadline, six categories."""
    policy = RetryPolicy()

    assert (5, 0.05, 2.0, "full", 30.0, None, None) == (
        policy.attempts,
        policy.wait_initial,
        policy.wait_max,
        policy.jitter,
        policy.deadline,
        policy.budget,
        policy.escalate_after,
    )
    assert DEFAULT_RETRY_ON == policy.retry_on
    assert 6 == len(policy.retry_on)


def test_policy_is_immutable_and_evolves():
    """Frozen; attrs.evolve makes validated variants; equal values compare equal."""
    policy = RetryPolicy()

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.attempts = 3  # type: ignore[misc]
    assert RetryPolicy(attempts=3) == attrs.evolve(policy, attempts=3)
    assert hash(RetryPolicy()) == hash(RetryPolicy())
    with pytest.raises(ValueError):
        attrs.evolve(policy, attempts=0)


def test_retry_on_is_stored_as_a_frozenset():
    """Any iterable of categories; duplicates collapse."""
    policy = RetryPolicy(retry_on=[ErrorCategory.DEADLOCK, ErrorCategory.DEADLOCK])

    assert frozenset({ErrorCategory.DEADLOCK}) == policy.retry_on
    assert frozenset() == RetryPolicy(retry_on=()).retry_on


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"attempts": 0}, ValueError, id="attempts-zero"),
        pytest.param({"attempts": -1}, ValueError, id="attempts-negative"),
        pytest.param({"attempts": 2.5}, TypeError, id="attempts-float"),
        pytest.param({"attempts": True}, TypeError, id="attempts-bool"),
        pytest.param({"attempts": "3"}, TypeError, id="attempts-str"),
        pytest.param({"wait_initial": -0.1}, ValueError, id="wait-initial-negative"),
        pytest.param({"wait_initial": math.nan}, ValueError, id="wait-initial-nan"),
        pytest.param({"wait_initial": "1"}, TypeError, id="wait-initial-str"),
        pytest.param({"wait_max": math.inf}, ValueError, id="wait-max-inf"),
        pytest.param({"wait_initial": 1.0, "wait_max": 0.5}, ValueError, id="max-below-initial"),
        pytest.param({"jitter": "equal"}, ValueError, id="jitter-unknown"),
        pytest.param({"deadline": 0}, ValueError, id="deadline-zero"),
        pytest.param({"deadline": -1}, ValueError, id="deadline-negative"),
        pytest.param({"deadline": "30"}, TypeError, id="deadline-str"),
        pytest.param({"retry_on": "deadlock"}, TypeError, id="retry-on-str"),
        pytest.param({"retry_on": ["deadlock"]}, TypeError, id="retry-on-values"),
        pytest.param({"retry_on": 5}, TypeError, id="retry-on-int"),
        pytest.param({"budget": 10}, TypeError, id="budget-int"),
        pytest.param({"escalate_after": 0}, ValueError, id="escalate-zero"),
        pytest.param({"escalate_after": 1.5}, TypeError, id="escalate-float"),
        pytest.param({"wait": 1.0}, TypeError, id="wait-not-tenacity"),
        pytest.param({"stop": 3}, TypeError, id="stop-not-tenacity"),
    ],
)
def test_invalid_values_fail_at_construction(kwargs, error):
    """Every bad value raises when the policy is built, never later."""
    with pytest.raises(error):
        RetryPolicy(**kwargs)


def test_valid_edge_values_are_accepted():
    """One attempt, zero waits, no deadline, an infinite deadline, tenacity escape hatches."""
    RetryPolicy(attempts=1, wait_initial=0, wait_max=0, deadline=None)
    RetryPolicy(deadline=math.inf, escalate_after=1)
    RetryPolicy(wait=tenacity.wait_fixed(0.1), stop=tenacity.stop_after_attempt(2))


def waits(policy: RetryPolicy, failures: int) -> list[float]:
    """The waits the policy computes after each of *failures* failures."""
    backoff = Backoff(policy, start=0.0)
    out = []
    for attempt in range(1, failures + 1):
        backoff.failed(attempt, RuntimeError(), now=float(attempt))
        out.append(backoff.next_wait())
    return out


def test_backoff_without_jitter_doubles_up_to_the_cap():
    """wait_exponential: initial, ×2 each time, capped at wait_max."""
    policy = RetryPolicy(wait_initial=0.05, wait_max=0.3, jitter="none")

    assert [0.05, 0.1, 0.2, 0.3, 0.3] == waits(policy, 5)


def test_full_jitter_stays_within_zero_and_the_exponential_cap():
    """wait_random_exponential: uniform in [0, min(wait_max, initial × 2^(n-1))]."""
    policy = RetryPolicy(wait_initial=0.05, wait_max=0.3)
    caps = [0.05, 0.1, 0.2, 0.3, 0.3]
    samples = [waits(policy, 5) for _ in range(200)]

    for sample in samples:
        assert all(0 <= wait <= cap for wait, cap in zip(sample, caps))
    assert len({round(sample[3], 6) for sample in samples}) > 50  # really random


def test_custom_wait_and_stop_replace_the_computed_ones():
    """The escape hatch: tenacity objects see attempt_number and upcoming_sleep."""
    policy = RetryPolicy(wait=tenacity.wait_fixed(7), stop=tenacity.stop_after_attempt(2))
    backoff = Backoff(policy, start=0.0)
    backoff.failed(1, RuntimeError(), now=1.0)

    assert 7.0 == backoff.next_wait()
    assert not backoff.custom_stop()
    backoff.failed(2, RuntimeError(), now=2.0)
    backoff.next_wait()
    assert backoff.custom_stop()


def test_budget_starts_full_and_refuses_at_half():
    """gRPC throttling: 10 tokens, each retry spends one, no retry while tokens <= 5."""
    budget = RetryBudget()

    granted = [budget._try_spend() for _ in range(7)]

    assert [True] * 5 + [False] * 2 == granted
    assert (5.0, 5, 2) == (budget.tokens, budget.retries, budget.refused)


def test_budget_successes_earn_token_ratio_up_to_the_capacity():
    """+token_ratio per success, capped at max_tokens; earning one token re-allows a retry."""
    budget = RetryBudget(max_tokens=4, token_ratio=0.5)
    for _ in range(2):
        budget._try_spend()
    refused_before = budget._try_spend()
    budget._deposit()
    budget._deposit()
    allowed_after = budget._try_spend()
    for _ in range(20):
        budget._deposit()

    assert (False, True, 4.0) == (refused_before, allowed_after, budget.tokens)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"max_tokens": 0}, ValueError, id="max-zero"),
        pytest.param({"max_tokens": -1}, ValueError, id="max-negative"),
        pytest.param({"max_tokens": "10"}, TypeError, id="max-str"),
        pytest.param({"token_ratio": 0}, ValueError, id="ratio-zero"),
        pytest.param({"token_ratio": 11}, ValueError, id="ratio-above-max"),
        pytest.param({"token_ratio": None}, TypeError, id="ratio-none"),
    ],
)
def test_budget_rejects_bad_values(kwargs, error):
    """Validated at construction."""
    with pytest.raises(error):
        RetryBudget(**kwargs)


def test_budget_counters_are_exact_under_concurrency():
    """8 threads spending and earning at once: tokens and counters add up exactly."""
    budget = RetryBudget(max_tokens=1000, token_ratio=1)
    start = threading.Barrier(8, timeout=10)

    def work():
        start.wait()
        for _ in range(500):
            budget._try_spend()
            budget._deposit()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert (4000, 0, 1000.0) == (budget.retries, budget.refused, budget.tokens)


def test_budget_is_shared_by_identity_in_policies():
    """Two policies holding the same budget are equal; budgets compare by identity."""
    budget = RetryBudget()

    assert RetryPolicy(budget=budget) == RetryPolicy(budget=budget)
    assert RetryPolicy(budget=budget) != RetryPolicy(budget=RetryBudget())


def test_testing_mode_counts_skipped_waits_towards_the_deadline():
    """Under set_testing() a call gives up after the attempts it would make with real waits."""
    import sqlalchemy as sa

    from txpolicy import ErrorCategory, LockTimeoutError, RetryPolicy, transactional
    from txpolicy.testing import inject_fault, set_testing

    engine = sa.create_engine("sqlite://")
    policy = RetryPolicy(attempts=10, wait_initial=0.2, wait_max=2.0, jitter="none", deadline=0.5)

    @transactional(engine, policy=policy)
    def touch(conn):
        conn.execute(sa.text("SELECT 1"))

    try:
        with set_testing(), inject_fault(engine, ErrorCategory.LOCK_TIMEOUT, times=10):
            try:
                touch()
            except LockTimeoutError as exc:
                error = exc
    finally:
        engine.dispose()

    assert 2 == error.attempts
