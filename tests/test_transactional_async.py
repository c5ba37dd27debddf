"""transactional() and attempts() with async binds: psycopg (async), asyncpg and aiosqlite."""

from __future__ import annotations

import asyncio
import inspect
import logging

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import sessionmaker

import txpolicy
from tests import scenarios
from tests.fix_db import url_for_driver
from tests.scenarios import REPEATABLE_READ, SCENARIOS, Scenario, State
from txpolicy import (
    ConfigurationError,
    ErrorCategory,
    IntegrityError,
    NoActiveTransaction,
    RetryPolicy,
    SerializationError,
    attempts,
    current_session,
    on_commit,
    transactional,
)
from txpolicy._config import set_testing
from txpolicy._hooks import AttemptRecord, add_hook

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(wait_initial=0.0, wait_max=0.0)
DRIVERS = [
    pytest.param("postgresql+psycopg", id="psycopg-async"),
    pytest.param("postgresql+asyncpg", id="asyncpg"),
]


@pytest.fixture(autouse=True)
def _no_waits():
    """Retries keep their decisions and counts but never sleep."""
    with set_testing():
        yield


@pytest.fixture
def records():
    """Every AttemptRecord of the test, in order."""
    seen: list[AttemptRecord] = []
    removers = [add_hook(event, seen.append) for event in ("retry", "give_up", "success")]
    yield seen
    for remove in removers:
        remove()


@pytest.fixture(params=DRIVERS)
async def pg(request, pg_engine, postgres_url, table_name):
    """The scenario table, an async engine through the driver under test, and a sync side."""
    scenarios.create_table(pg_engine, table_name)
    engine = create_async_engine(url_for_driver(postgres_url, request.param))
    yield engine, async_sessionmaker(engine), pg_engine, table_name
    await engine.dispose()
    scenarios.drop_table(pg_engine, table_name)


@pytest.fixture
async def lite():
    """An aiosqlite in-memory engine (one shared connection)."""
    engine = create_async_engine("sqlite+aiosqlite://")
    yield engine
    await engine.dispose()


# --- the shared scenarios ---------------------------------------------------------------------


async def touch_row1(session, state: State, side: sa.Engine, table: str) -> None:
    """Read row 1, maybe let another transaction update it, then update it (40001 if so)."""
    statements = scenarios.sql(table)
    await session.execute(statements["read1"])
    if state.take_conflict():
        scenarios.side_update(side, table)
    await session.execute(statements["bump1"])


async def run_form(  # noqa: C901 - one branch per form, mirroring the sync file
    scenario: Scenario, state: State, factory: async_sessionmaker, side: sa.Engine, table: str
) -> None:
    """Run one scenario's form with async scopes, counting into *state*."""
    policy = scenarios.policy(scenario.attempts)
    statements = scenarios.sql(table)

    async def plain_body(session):
        state.outer_calls += 1
        on_commit(state.callback("outer"))
        await touch_row1(session, state, side, table)

    if scenario.form == "decorator":
        scope = transactional(factory, isolation_level=REPEATABLE_READ, policy=policy)
        await scope(plain_body)()
    elif scenario.form == "block":
        async for attempt in attempts(factory, isolation_level=REPEATABLE_READ, policy=policy):
            async with attempt as session:
                await plain_body(session)
    elif scenario.form == "context_manager":
        scope = transactional(factory, isolation_level=REPEATABLE_READ, policy=policy)
        async with scope as session:
            await plain_body(session)
    elif scenario.form in ("joined", "swallowed"):

        @transactional(factory)
        async def inner(session):
            state.inner_calls += 1
            if scenario.form == "joined":
                on_commit(state.callback("inner"))
            await touch_row1(session, state, side, table)

        @transactional(factory, isolation_level=REPEATABLE_READ, policy=policy)
        async def outer(session):
            state.outer_calls += 1
            on_commit(state.callback("outer"))
            await session.execute(statements["bump2"])
            if scenario.form == "joined":
                await inner()
                return
            try:
                await inner()
            except SerializationError:
                pass  # the owner must still not commit

        await outer()
    elif scenario.form in ("savepoint_contained", "savepoint_uncaught"):

        @transactional(factory, propagation="nested")
        async def inner(session):
            state.inner_calls += 1
            on_commit(state.callback("inner"))
            if scenario.form == "savepoint_contained":
                await session.execute(statements["bump1"])
                await session.execute(statements["duplicate"])
            else:
                await touch_row1(session, state, side, table)

        @transactional(factory, isolation_level=REPEATABLE_READ, policy=policy)
        async def outer(session):
            state.outer_calls += 1
            await session.execute(statements["bump2"])
            if scenario.form == "savepoint_contained":
                on_commit(state.callback("outer"))
                with pytest.raises(IntegrityError):
                    await inner()
            else:
                await inner()
                on_commit(state.callback("outer"))

        await outer()
    elif scenario.form == "requires_new":

        @transactional(
            factory, propagation="requires_new", isolation_level=REPEATABLE_READ, policy=policy
        )
        async def inner(session):
            state.inner_calls += 1
            on_commit(state.callback("inner"))
            await touch_row1(session, state, side, table)

        @transactional(factory, policy=policy)
        async def outer(session):
            state.outer_calls += 1
            await session.execute(statements["bump2"])
            await inner()
            on_commit(state.callback("outer"))

        await outer()
    else:
        raise AssertionError(scenario.form)


@pytest.mark.postgres
@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_scenario(pg, scenario):
    """Real serialization failures: attempts, nesting, savepoints, requires_new, on_commit."""
    engine, factory, side, table = pg
    state = State(scenario.conflicts)
    error = None
    try:
        await run_form(scenario, state, factory, side, table)
    except txpolicy.TransactionError as exc:
        error = exc
    outcome = state.outcome(*scenarios.rows(side, table), error)

    assert scenario.expected == outcome
    assert 0 == engine.pool.checkedout()


# --- errors -----------------------------------------------------------------------------------


class Boom(Exception):
    """An application error."""


@pytest.mark.postgres
async def test_non_database_error_propagates_unchanged_after_rollback(pg):
    """The same exception object, one call, the write rolled back, the connection returned."""
    engine, factory, side, table = pg
    boom = Boom()
    calls = []

    @transactional(factory, policy=FAST)
    async def body(session):
        calls.append(1)
        await session.execute(scenarios.sql(table)["bump1"])
        raise boom

    with pytest.raises(Boom) as info:
        await body()

    assert (boom, [1]) == (info.value, calls)
    assert (0, 0) == scenarios.rows(side, table)
    assert 0 == engine.pool.checkedout()


@pytest.mark.postgres
async def test_non_retryable_error_is_raised_after_one_attempt(pg):
    """A real unique violation through the async driver: IntegrityError, attempts == 1."""
    engine, factory, _, table = pg
    calls = []

    @transactional(factory, policy=FAST)
    async def body(session):
        calls.append(1)
        await session.execute(scenarios.sql(table)["duplicate"])

    with pytest.raises(IntegrityError) as info:
        await body()

    assert ([1], 1, "23505") == (calls, info.value.attempts, info.value.sqlstate)
    assert isinstance(info.value.__cause__, sa.exc.DBAPIError)


@pytest.mark.postgres
async def test_terminated_connection_is_invalidated_and_retried(pg, records):
    """pg_terminate_backend during attempt 1: CONNECTION, attempt 2 on a new backend."""
    engine, factory, side, table = pg
    pids = []

    @transactional(factory, policy=FAST)
    async def body(session):
        pid = (await session.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
        pids.append(pid)
        if len(pids) == 1:
            terminate(side, pid)
        await session.execute(scenarios.sql(table)["bump1"])

    await body()

    assert 2 == len(pids)
    assert pids[0] != pids[1]
    assert [ErrorCategory.CONNECTION] == [r.category for r in records if r.event == "retry"]
    assert (1, 0) == scenarios.rows(side, table)
    assert 0 == engine.pool.checkedout()


def terminate(engine: sa.Engine, pid: int) -> None:
    """Terminate backend *pid* and wait until it is gone (bounded)."""
    from tests.test_transactional_sync import terminate as sync_terminate

    sync_terminate(engine, pid)


@pytest.mark.postgres
async def test_cancelled_task_returns_its_connection(pg):
    """Cancelling a task in the middle of its body rolls back and returns the connection."""
    engine, factory, side, table = pg
    started = asyncio.Event()

    @transactional(factory, policy=FAST)
    async def body(session):
        await session.execute(scenarios.sql(table)["bump1"])
        started.set()
        await asyncio.sleep(30)

    task = asyncio.ensure_future(body())
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert 0 == engine.pool.checkedout()
    assert (0, 0) == scenarios.rows(side, table)


@pytest.mark.postgres
async def test_isolation_read_only_and_timeouts_apply_through_async_drivers(pg):
    """SERIALIZABLE, READ ONLY and SET LOCAL timeouts hold inside; the pooled connection is clean."""
    engine, factory, _, table = pg
    show = sa.text(
        "SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only'), "
        "current_setting('lock_timeout'), current_setting('statement_timeout')"
    )
    scope = transactional(
        factory, isolation_level="Serializable", read_only=True, lock_timeout=0.3, statement_timeout=4
    )

    async with scope as session:
        inside = tuple((await session.execute(show)).one())
    with pytest.raises(txpolicy.ReadOnlyError):
        async with scope as session:
            await session.execute(scenarios.sql(table)["bump1"])
    async with factory() as session:
        after = tuple((await session.execute(show)).one())

    assert ("serializable", "on", "300ms", "4s") == inside
    assert ("read committed", "off", "0", "0") == after


# --- propagation and callbacks ----------------------------------------------------------------


async def test_task_started_inside_a_scope_does_not_join_it(lite):
    """A child task inherits the contextvars but sees no active transaction."""
    factory = async_sessionmaker(lite)
    seen = {}

    @transactional(factory)
    async def in_task(session):
        seen["task"] = session

    async def child():
        try:
            current_session()
        except NoActiveTransaction:
            seen["no_active"] = True
        await in_task()

    @transactional(factory)
    async def outer(session):
        seen["outer"] = session
        assert current_session() is session
        await asyncio.wait_for(asyncio.ensure_future(child()), 10)

    await outer()

    assert seen["no_active"]
    assert seen["task"] is not seen["outer"]


async def test_required_joins_and_isolation_conflicts_fail_before_the_body(lite):
    """Joined calls share the session; another isolation level is a ConfigurationError."""
    factory = async_sessionmaker(lite)
    seen = []

    @transactional(factory)
    async def joined(session):
        seen.append(session)

    @transactional(factory, isolation_level="SERIALIZABLE")
    async def other_level(session):
        seen.append("ran")

    @transactional(factory)
    async def outer(session):
        seen.append(session)
        await joined()
        with pytest.raises(ConfigurationError):
            await other_level()

    await outer()

    assert 2 == len(seen)
    assert seen[0] is seen[1]


async def test_on_commit_awaits_async_callbacks_in_order_once(lite):
    """Sync and async callbacks run once, in order, after the commit and before the return."""
    ran = []

    async def later():
        await asyncio.sleep(0)
        ran.append("async")

    @transactional(lite)
    async def body(conn):
        on_commit(lambda: ran.append("sync"))
        on_commit(later)
        assert [] == ran
        return "done"

    result = await body()

    assert ("done", ["sync", "async"]) == (result, ran)


async def test_async_forms_yield_async_sessions_and_connections(lite):
    """async_sessionmaker yields AsyncSession; AsyncEngine yields AsyncConnection."""
    kinds = []
    async with transactional(async_sessionmaker(lite)) as session:
        kinds.append(type(session))
    async for attempt in attempts(lite):
        async with attempt as conn:
            kinds.append(type(conn))
            assert 1 == attempt.num

    assert [AsyncSession, AsyncConnection] == kinds


async def test_nothing_is_logged_when_nothing_fails(lite, caplog):
    """The async happy path is silent too."""

    @transactional(lite)
    async def body(conn):
        return (await conn.exec_driver_sql("SELECT 1")).scalar_one()

    with caplog.at_level(logging.DEBUG, logger="txpolicy"):
        assert 1 == await body()

    assert [] == caplog.records


# --- decoration -------------------------------------------------------------------------------


def test_async_wrapper_stays_a_coroutine_function_with_the_signature_minus_session():
    """inspect sees a coroutine function named like the original, without the session."""
    factory = async_sessionmaker()

    async def load(session, key: str) -> int:
        """Load."""
        return 1

    wrapped = transactional(factory)(load)

    assert inspect.iscoroutinefunction(wrapped)
    assert ("load", "Load.") == (wrapped.__name__, wrapped.__doc__)
    assert ["key"] == list(inspect.signature(wrapped).parameters)


def _sync_body(session):
    pass


async def _async_body(session):
    pass


def test_sync_function_on_async_bind_and_the_reverse_fail_at_decoration():
    """TypeError when decorating, for both mismatches."""
    with pytest.raises(TypeError):
        transactional(async_sessionmaker())(_sync_body)
    with pytest.raises(TypeError):
        transactional(sessionmaker())(_async_body)
