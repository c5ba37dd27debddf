"""
A PostgreSQL failover under a running workload, on a real streaming-replication pair.

Each test builds its own pair (``tests/harness/replication.py``: a primary and a synchronous
standby from ``pg_basebackup``, on free loopback ports), runs a transfer workload through a
``Database`` whose URL names both servers with ``target_session_attrs=read-write``, and fails
over while the workload runs:

- **crash**: the primary is stopped with ``immediate`` (as if it crashed), then the standby is
  promoted. Pooled connections to the dead server fail with connection errors; the retries
  reconnect, and libpq's multi-host URL finds the new primary.
- **fence**: the primary is fenced read-only (``default_transaction_read_only``, as failover
  managers demote it) while still running, the standby is promoted, then the old primary is
  stopped. Pooled connections to the fenced server fail with ``25006`` (``ReadOnlyError``); they
  are invalidated and the retry reconnects to the new primary. A commit that was waiting for
  the synchronous standby when it was promoted is released only when the old primary stops:
  it committed there and nowhere else, and its caller gets ``CommitUnknownError``.

Invariants, checked on the new primary: every transfer a caller saw succeed is there, none is
there twice, balances match the ledger, every ambiguous commit was surfaced as
``CommitUnknownError``, no call gave up, no connection is checked out and no session tracked.
The workload goes on: after the failover, transfers commit on the new primary.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

import txpolicy
from tests.harness import ReplicationPair, replication_pair
from tests.harness.workload import Bank, Outcomes
from txpolicy import CommitUnknownError, Database, ErrorCategory, RetryPolicy

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

# Long enough to ride out a failover (promotion takes well under a second here; the deadline
# is what bounds it in production), short waits so the workload notices the new primary fast.
POLICY = RetryPolicy(attempts=60, wait_initial=0.02, wait_max=0.25, deadline=30)
THREADS = 3
BEFORE, AFTER = 30, 30  # transfers committed before the failover, and on the new primary after it


@pytest.fixture
def pair() -> Iterator[ReplicationPair]:
    """A fresh primary + synchronous standby (a failover consumes it)."""
    with replication_pair() as p:
        yield p


def _report(record_property, name: str, value: object) -> None:
    """Make a figure visible with -s and in the junit XML."""
    print(f"[failover] {name}: {value}")
    record_property(name, value)


class Workload:
    """Transfers in threads until stopped; records outcomes and which server committed each."""

    def __init__(self, db: Database, bank: Bank) -> None:
        self.bank = bank
        self.outcomes = Outcomes()
        self.unknown: list[CommitUnknownError] = []
        self.committed_on: list[tuple[float, int]] = []  # (monotonic time, server port)
        self.stop = threading.Event()
        self._lock = threading.Lock()

        @txpolicy.transactional(db)
        def transfer(session, transfer_id, src, dst, amount):
            bank.transfer(session, transfer_id, src, dst, amount)
            return session.execute(sa.text("SELECT inet_server_port()")).scalar()

        self.transfer = transfer
        self.threads = [
            threading.Thread(target=self._worker, args=(i,), name=f"failover-{i}") for i in range(THREADS)
        ]

    def _worker(self, index: int) -> None:
        rng = random.Random(index)
        while not self.stop.is_set():
            transfer_id, src, dst, amount = self.bank.new_transfer(rng)
            try:
                port = self.transfer(transfer_id, src, dst, amount)
            except CommitUnknownError as exc:
                self.unknown.append(exc)
                self.outcomes.record(transfer_id, exc)
            except Exception as exc:
                self.outcomes.record(transfer_id, exc)
            else:
                self.outcomes.record(transfer_id, None)
                with self._lock:
                    self.committed_on.append((time.monotonic(), port))

    def commits_on(self, port: int) -> int:
        with self._lock:
            return sum(1 for _, p in self.committed_on if p == port)

    def first_commit_on(self, port: int) -> float:
        with self._lock:
            return min(t for t, p in self.committed_on if p == port)

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                self.stop.set()
                raise AssertionError(f"workload: {what} not reached in {timeout} s ({self.outcomes.calls} calls)")
            time.sleep(0.01)

    def __enter__(self) -> Workload:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(POLICY.deadline + 10)
        assert not any(thread.is_alive() for thread in self.threads)


def _fail_over(pair: ReplicationPair, how: str, record_property) -> None:
    """Run the workload, fail over *how*, check the invariants on the new primary."""
    # Ordered updates: a deadlock would stall the workers for deadlock_timeout right when the
    # failover happens, and the test is about the failover.
    bank = Bank(sa.create_engine(pair.primary.url(), poolclass=sa.NullPool), accounts=8, ordered=True)
    db = Database(pair.multihost_url(), pool_size=4, max_overflow=0, policy=POLICY)
    new_primary = sa.create_engine(pair.standby.url(), poolclass=sa.NullPool)
    try:
        with Workload(db, bank) as work:
            work.wait_until(lambda: work.commits_on(pair.primary.port) >= BEFORE, 30, "commits before")
            started = time.monotonic()
            if how == "crash":
                pair.stop_primary("immediate")
                pair.promote()
            else:
                pair.fence_primary()
                pair.promote()
            promoted = time.monotonic()
            if how == "fence":
                # A commit that was waiting for the synchronous standby when it was promoted
                # waits until the old primary goes: failover managers stop it, and so do we.
                pair.stop_primary("fast")
            work.wait_until(lambda: work.commits_on(pair.standby.port) >= AFTER, 30, "commits after")
        stats = db.stats()
    finally:
        db.close()
    audit = bank.audit(work.outcomes, engine=new_primary)
    new_primary.dispose()
    bank.admin.dispose()
    outcomes = work.outcomes
    _report(record_property, f"{how}_promotion_seconds", round(promoted - started, 3))
    _report(record_property, f"{how}_seconds_without_commits", round(work.first_commit_on(pair.standby.port) - started, 3))
    _report(record_property, f"{how}_outcomes", {"ok": len(outcomes.ok), "unknown": len(outcomes.unknown), "failed": len(outcomes.failed)})
    _report(record_property, f"{how}_retries", {c.value: n for c, n in stats.retries_by_category.items() if n})
    _report(record_property, f"{how}_unknown_committed", audit.unknown_committed)
    _report(record_property, "pair_setup_seconds", round(pair.setup_seconds or 0, 2))

    assert audit.holds, audit
    assert {} == outcomes.failed
    assert all(e.during_commit for e in work.unknown)
    assert work.commits_on(pair.standby.port) >= AFTER
    assert (0, 0) == (stats.active_sessions_count, stats.engines["primary"].checked_out)
    return stats


def test_failover_after_primary_crash(pair, record_property):
    """Primary crashes, standby promoted: the workload reconnects to it; nothing lost or doubled."""
    stats = _fail_over(pair, "crash", record_property)

    assert stats.retries_by_category[ErrorCategory.CONNECTION] >= 1


def test_failover_after_fencing_primary(pair, record_property):
    """Primary fenced read-only, standby promoted: 25006 is retried on a fresh connection to the new primary."""
    stats = _fail_over(pair, "fence", record_property)

    assert stats.retries_by_category[ErrorCategory.READ_ONLY] >= 1
