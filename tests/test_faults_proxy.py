"""
A transfer workload through ``transactional()`` while a proxy cuts its connections.

The proxy (``tests/harness/pgproxy.py``) sits between the workload's ``Database`` and
PostgreSQL and cuts connections at three protocol moments: before COMMIT reaches the server
(nothing committed), after the server committed but before the client hears it (committed; the
client cannot know), and in the middle of a transaction. After every run: no committed transfer
lost, none applied twice, every cut at COMMIT surfaced as ``CommitUnknownError`` with
``during_commit=True`` (or resolved by an idempotent body), mid-transaction cuts retried on a
fresh connection, no connection checked out and no session tracked.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

import txpolicy
from tests.fix_db import url_for_driver
from tests.harness import CutRule, PgProxy, proxy_for
from tests.harness.workload import Bank, Outcomes, run_threads
from txpolicy import (
    AsyncDatabase,
    CommitUnknownError,
    Database,
    ErrorCategory,
    RetryPolicy,
)

pytestmark = pytest.mark.postgres

POLICY = RetryPolicy(attempts=20, wait_initial=0.005, wait_max=0.05, deadline=30)
CUTS_PER_MOMENT = 5


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[PgProxy]:
    """A cutting proxy in front of the test server."""
    with proxy_for(postgres_url) as p:
        yield p


@pytest.fixture
def bank(pg_engine: sa.Engine) -> Iterator[Bank]:
    """Accounts and ledger tables on the test server, dropped afterwards."""
    b = Bank(pg_engine, accounts=8)
    yield b
    b.drop()


@pytest.fixture
def db(proxy: PgProxy, postgres_url: str) -> Iterator[Database]:
    """A Database whose every connection goes through the proxy."""
    database = Database(proxy.url(postgres_url), pool_size=4, max_overflow=0, policy=POLICY)
    yield database
    database.close()


def _report(record_property, name: str, value: object) -> None:
    """Make a figure visible with -s and in the junit XML."""
    print(f"[faults] {name}: {value}")
    record_property(name, value)


def test_transfers_survive_cuts_at_every_moment(db, proxy, bank, record_property):
    """Cuts before COMMIT, after COMMIT and mid-transaction: nothing lost, nothing doubled, ambiguity surfaced."""
    arms = {
        "before_commit": proxy.arm(CutRule.before_commit(only_if=bank.ledger_table), times=CUTS_PER_MOMENT),
        "after_commit": proxy.arm(CutRule.after_commit(only_if=bank.ledger_table), times=CUTS_PER_MOMENT),
        "mid_transaction": proxy.arm(
            CutRule.mid_transaction(2, only_if=bank.ledger_table), times=CUTS_PER_MOMENT
        ),
    }
    transfer = txpolicy.transactional(db)(bank.transfer)
    outcomes = Outcomes()
    unknown_errors: list[CommitUnknownError] = []

    def worker(index: int) -> None:
        rng = random.Random(index)
        for _ in range(30):
            transfer_id, src, dst, amount = bank.new_transfer(rng)
            try:
                transfer(transfer_id, src, dst, amount)
            except CommitUnknownError as exc:
                unknown_errors.append(exc)
                outcomes.record(transfer_id, exc)
            except Exception as exc:
                outcomes.record(transfer_id, exc)
            else:
                outcomes.record(transfer_id, None)

    run_threads(worker, threads=4)
    audit = bank.audit(outcomes)
    stats = db.stats()
    events = proxy.events
    _report(record_property, "proxy_cuts", {name: arm.fired for name, arm in arms.items()})
    _report(record_property, "outcomes", {"ok": len(outcomes.ok), "unknown": len(outcomes.unknown), "failed": len(outcomes.failed)})
    _report(record_property, "retries", {c.value: n for c, n in stats.retries_by_category.items() if n})

    assert audit.holds, audit
    assert {name: CUTS_PER_MOMENT for name in arms} == {name: arm.fired for name, arm in arms.items()}
    assert {} == outcomes.failed
    assert 2 * CUTS_PER_MOMENT == len(outcomes.unknown)
    # The server's own answer, seen by the proxy, says which ambiguous commits happened.
    assert (CUTS_PER_MOMENT, CUTS_PER_MOMENT) == (audit.unknown_committed, audit.unknown_not_committed)
    assert CUTS_PER_MOMENT == sum(1 for e in events if e.committed)
    assert all(e.during_commit and e.category is ErrorCategory.COMMIT_UNKNOWN for e in unknown_errors)
    assert stats.retries_by_category[ErrorCategory.CONNECTION] >= CUTS_PER_MOMENT
    assert (0, 0) == (stats.active_sessions_count, stats.engines["primary"].checked_out)


def test_idempotent_transfers_apply_exactly_once_through_commit_cuts(db, proxy, bank, record_property):
    """With idempotent=True an ambiguous commit is retried, and an idempotent body makes the retry a no-op."""
    transfer = txpolicy.transactional(db, idempotent=True)(bank.idempotent_transfer)
    outcomes = Outcomes()
    applied: list[bool] = []
    arms = []
    rng = random.Random(7)
    for index in range(15):  # 3 cuts before COMMIT, 3 after
        if index % 5 == 1:
            arms.append(proxy.arm(CutRule.before_commit(only_if=bank.ledger_table)))
        elif index % 5 == 3:
            arms.append(proxy.arm(CutRule.after_commit(only_if=bank.ledger_table)))
        transfer_id, src, dst, amount = bank.new_transfer(rng)
        try:
            applied.append(transfer(transfer_id, src, dst, amount))
            outcomes.record(transfer_id, None)
        except Exception as exc:
            outcomes.record(transfer_id, exc)
    audit = bank.audit(outcomes)
    stats = db.stats()
    _report(record_property, "proxy_cuts", [event.rule.moment.value for event in proxy.events])

    assert audit.holds, audit
    assert (15, 15) == (len(outcomes.ok), audit.ledger_rows)
    assert [1] * 6 == [arm.fired for arm in arms]
    # The retry after each cut *after* COMMIT found its transfer already applied; after a cut
    # *before* COMMIT the retry applied it.
    assert [False] * 3 == [applied[i] for i in (3, 8, 13)]
    assert 12 == sum(applied)
    assert (0, 0) == (stats.active_sessions_count, stats.engines["primary"].checked_out)


def test_pooled_connections_cut_while_idle_are_replaced(db, proxy, bank, record_property):
    """A network partition kills every idle pooled connection; the next transfers retry on fresh ones."""
    transfer = txpolicy.transactional(db)(bank.transfer)
    outcomes = Outcomes()
    rng = random.Random(3)

    def warm(index: int) -> None:
        transfer_id, src, dst, amount = bank.new_transfer(random.Random(100 + index))
        transfer(transfer_id, src, dst, amount)
        outcomes.record(transfer_id, None)

    run_threads(warm, threads=4)
    cut = proxy.cut_all()
    for _ in range(8):
        transfer_id, src, dst, amount = bank.new_transfer(rng)
        try:
            transfer(transfer_id, src, dst, amount)
            outcomes.record(transfer_id, None)
        except Exception as exc:
            outcomes.record(transfer_id, exc)
    audit = bank.audit(outcomes)
    stats = db.stats()
    _report(record_property, "connections_cut_idle", cut)

    assert cut >= 1
    assert audit.holds, audit
    assert (12, {}) == (len(outcomes.ok), outcomes.failed)
    assert stats.retries_by_category[ErrorCategory.CONNECTION] >= 1
    assert (0, 0) == (stats.active_sessions_count, stats.engines["primary"].checked_out)


@pytest.mark.anyio
@pytest.mark.parametrize("driver", ["postgresql+asyncpg", "postgresql+psycopg_async"])
async def test_async_commit_cuts_surface_commit_unknown(proxy, bank, postgres_url, driver, record_property):
    """Through AsyncDatabase (asyncpg and psycopg async) a cut at COMMIT is CommitUnknownError, a mid cut is retried."""
    url = proxy.url(url_for_driver(postgres_url, driver))
    if driver == "postgresql+asyncpg":
        # asyncpg takes ssl=, not libpq's sslmode=.
        url = sa.make_url(url).difference_update_query(["sslmode"]).update_query_dict({"ssl": "disable"})
    database = AsyncDatabase(url, pool_size=2, max_overflow=0, policy=POLICY)
    try:
        transfer = txpolicy.transactional(database)(_async_body(bank))
        outcomes = Outcomes()
        errors: list[BaseException] = []
        rng = random.Random(11)
        for rule in (
            CutRule.before_commit(only_if=bank.ledger_table),
            CutRule.after_commit(only_if=bank.ledger_table),
            CutRule.mid_transaction(2, only_if=bank.ledger_table),
        ):
            proxy.arm(rule)
            transfer_id, src, dst, amount = bank.new_transfer(rng)
            try:
                await transfer(transfer_id, src, dst, amount)
                outcomes.record(transfer_id, None)
            except Exception as exc:
                errors.append(exc)
                outcomes.record(transfer_id, exc)
        stats = database.stats()
    finally:
        await database.aclose()
    audit = bank.audit(outcomes)
    _report(record_property, "proxy_cuts", len(proxy.events))

    assert audit.holds, audit
    assert [(True, True), (True, True)] == [
        (isinstance(e, CommitUnknownError), e.during_commit) for e in errors
    ]
    assert (1, 1, 1) == (len(outcomes.ok), audit.unknown_committed, audit.unknown_not_committed)
    assert (0, 0) == (stats.active_sessions_count, stats.engines["primary"].checked_out)


def _async_body(bank: Bank):
    async def transfer(session, transfer_id, src, dst, amount):
        await session.run_sync(lambda s: bank.transfer(s, transfer_id, src, dst, amount))

    return transfer


@pytest.mark.parametrize("check", ["verify", "commit_marker"])
def test_verify_and_commit_marker_resolve_every_cut_at_commit(db, proxy, bank, pg_engine, check, record_property):
    """With verify= or the commit marker, no cut reaches the caller: every transfer applied exactly once."""
    from txpolicy._markers import CommitMarker  # noqa: PLC0415 - to become txpolicy.CommitMarker

    arms = {
        "before_commit": proxy.arm(CutRule.before_commit(only_if=bank.ledger_table), times=CUTS_PER_MOMENT),
        "after_commit": proxy.arm(CutRule.after_commit(only_if=bank.ledger_table), times=CUTS_PER_MOMENT),
        "mid_transaction": proxy.arm(
            CutRule.mid_transaction(2, only_if=bank.ledger_table), times=CUTS_PER_MOMENT
        ),
    }
    markers = f"t_mrk_{bank.ledger_table[6:]}"
    if check == "verify":
        options = {"verify": lambda session, transfer_id, *_: bank.is_applied(session, transfer_id)}
    else:
        options = {"commit_marker": CommitMarker(table=markers)}
    transfer = db.transactional(**options)(bank.transfer)
    outcomes = Outcomes()

    def worker(index: int) -> None:
        rng = random.Random(100 + index)
        for _ in range(30):
            transfer_id, src, dst, amount = bank.new_transfer(rng)
            try:
                transfer(transfer_id, src, dst, amount)
            except Exception as exc:
                outcomes.record(transfer_id, exc)
            else:
                outcomes.record(transfer_id, None)

    try:
        run_threads(worker, threads=4)
        audit = bank.audit(outcomes)
        stats = db.stats()
        with pg_engine.connect() as conn:
            marker_rows = conn.execute(sa.text(f"SELECT count(*) FROM {markers}")).scalar_one() if check != "verify" else None
    finally:
        with pg_engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {markers}"))
    committed_cuts = sum(1 for e in proxy.events if e.rule.moment.value == "after_commit" and e.committed)
    _report(record_property, f"proxy_cuts_{check}", {name: arm.fired for name, arm in arms.items()})
    _report(record_property, f"outcomes_{check}", {"ok": len(outcomes.ok), "unknown": len(outcomes.unknown), "failed": len(outcomes.failed)})

    assert audit.holds, audit
    assert {name: CUTS_PER_MOMENT for name in arms} == {name: arm.fired for name, arm in arms.items()}
    assert (120, 0, {}) == (len(outcomes.ok), len(outcomes.unknown), outcomes.failed)
    assert 120 == audit.ledger_rows
    assert CUTS_PER_MOMENT == committed_cuts
    assert check == "verify" or 120 == marker_rows
    # Cuts before COMMIT and mid-transaction are retried as connection failures; cuts after
    # the server committed are settled by the check, without a retry.
    assert stats.retries_by_category[ErrorCategory.CONNECTION] >= 2 * CUTS_PER_MOMENT
    assert (0, 0) == (stats.active_sessions_count, stats.engines["primary"].checked_out)


@pytest.mark.anyio
@pytest.mark.parametrize("driver", ["postgresql+asyncpg", "postgresql+psycopg_async"])
async def test_async_commit_marker_resolves_cuts_at_commit(proxy, bank, pg_engine, postgres_url, driver):
    """AsyncDatabase with the commit marker: cuts before and after COMMIT are both resolved, exactly once."""
    from txpolicy._markers import CommitMarker  # noqa: PLC0415 - to become txpolicy.CommitMarker

    url = proxy.url(url_for_driver(postgres_url, driver))
    if driver == "postgresql+asyncpg":
        url = sa.make_url(url).difference_update_query(["sslmode"]).update_query_dict({"ssl": "disable"})
    markers = f"t_mrk_{bank.ledger_table[6:]}"
    database = AsyncDatabase(url, pool_size=2, max_overflow=0, policy=POLICY)
    outcomes = Outcomes()
    try:
        transfer = database.transactional(commit_marker=CommitMarker(table=markers))(_async_body(bank))
        rng = random.Random(13)
        for index in range(6):
            rule = CutRule.before_commit if index % 2 else CutRule.after_commit
            proxy.arm(rule(only_if=bank.ledger_table))
            transfer_id, src, dst, amount = bank.new_transfer(rng)
            try:
                await transfer(transfer_id, src, dst, amount)
                outcomes.record(transfer_id, None)
            except Exception as exc:
                outcomes.record(transfer_id, exc)
        stats = database.stats()
    finally:
        await database.aclose()
        with pg_engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {markers}"))
    audit = bank.audit(outcomes)

    assert audit.holds, audit
    assert (6, 6, {}) == (len(outcomes.ok), audit.ledger_rows, outcomes.failed)
    assert [True, False] * 3 == [e.committed for e in proxy.events]
    assert 3 == stats.retries_by_category[ErrorCategory.CONNECTION]
    assert (0, 0) == (stats.active_sessions_count, stats.engines["primary"].checked_out)
