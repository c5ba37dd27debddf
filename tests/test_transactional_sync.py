"""transactional() and attempts() with sync binds, against real PostgreSQL, MariaDB and SQLite."""

from __future__ import annotations

import contextvars
import inspect
import logging
import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, registry, sessionmaker

import txpolicy
from tests import scenarios
from tests.scenarios import REPEATABLE_READ, SCENARIOS, Scenario, State
from txpolicy import (
    CommitUnknownError,
    ConfigurationError,
    ErrorCategory,
    IntegrityError,
    LockTimeoutError,
    NoActiveTransaction,
    ReadOnlyError,
    RetryBudget,
    RetryPolicy,
    SerializationError,
    attempts,
    current_session,
    on_commit,
    transactional,
)
from txpolicy._config import set_testing
from txpolicy._hooks import AttemptRecord, add_hook

FAST = RetryPolicy(wait_initial=0.0, wait_max=0.0)


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


@pytest.fixture
def pg(pg_engine, table_name):
    """The scenario table on PostgreSQL, with a sessionmaker over a fresh engine."""
    scenarios.create_table(pg_engine, table_name)
    yield pg_engine, sessionmaker(pg_engine), table_name
    scenarios.drop_table(pg_engine, table_name)


@pytest.fixture
def sqlite_file(tmp_path):
    """A SQLite file whose busy timeout is 10 ms, with a table ``t``, and a lock holder."""
    path = tmp_path / "db.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.01})
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    yield engine, path
    engine.dispose()


@pytest.fixture
def locked(sqlite_file):
    """The SQLite file with its write lock held by another connection (BEGIN IMMEDIATE)."""
    engine, path = sqlite_file
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    yield engine
    holder.execute("ROLLBACK")
    holder.close()


# --- the shared scenarios ---------------------------------------------------------------------


def touch_row1(session, state: State, side: sa.Engine, table: str) -> None:
    """Read row 1, maybe let another transaction update it, then update it (40001 if so)."""
    statements = scenarios.sql(table)
    session.execute(statements["read1"])
    if state.take_conflict():
        scenarios.side_update(side, table)
    session.execute(statements["bump1"])


def run_form(
    scenario: Scenario, state: State, factory: sessionmaker, side: sa.Engine, table: str
) -> None:
    """Run one scenario's form with sync scopes, counting into *state*; raises what it raises."""
    policy = scenarios.policy(scenario.attempts)
    statements = scenarios.sql(table)

    def plain_body(session):
        state.outer_calls += 1
        on_commit(state.callback("outer"))
        touch_row1(session, state, side, table)

    if scenario.form == "decorator":
        transactional(factory, isolation_level=REPEATABLE_READ, policy=policy)(plain_body)()
    elif scenario.form == "block":
        for attempt in attempts(factory, isolation_level=REPEATABLE_READ, policy=policy):
            with attempt as session:
                plain_body(session)
    elif scenario.form == "context_manager":
        with transactional(factory, isolation_level=REPEATABLE_READ, policy=policy) as session:
            plain_body(session)
    elif scenario.form in ("joined", "swallowed"):

        @transactional(factory)
        def inner(session):
            state.inner_calls += 1
            if scenario.form == "joined":
                on_commit(state.callback("inner"))
            touch_row1(session, state, side, table)

        @transactional(factory, isolation_level=REPEATABLE_READ, policy=policy)
        def outer(session):
            state.outer_calls += 1
            on_commit(state.callback("outer"))
            session.execute(statements["bump2"])
            if scenario.form == "joined":
                inner()
                return
            try:
                inner()
            except SerializationError:
                pass  # the owner must still not commit

        outer()
    elif scenario.form in ("savepoint_contained", "savepoint_uncaught"):

        @transactional(factory, propagation="nested")
        def inner(session):
            state.inner_calls += 1
            on_commit(state.callback("inner"))
            if scenario.form == "savepoint_contained":
                session.execute(statements["bump1"])
                session.execute(statements["duplicate"])
            else:
                touch_row1(session, state, side, table)

        @transactional(factory, isolation_level=REPEATABLE_READ, policy=policy)
        def outer(session):
            state.outer_calls += 1
            session.execute(statements["bump2"])
            if scenario.form == "savepoint_contained":
                on_commit(state.callback("outer"))
                with pytest.raises(IntegrityError):
                    inner()
            else:
                inner()
                on_commit(state.callback("outer"))

        outer()
    elif scenario.form == "requires_new":

        @transactional(
            factory, propagation="requires_new", isolation_level=REPEATABLE_READ, policy=policy
        )
        def inner(session):
            state.inner_calls += 1
            on_commit(state.callback("inner"))
            touch_row1(session, state, side, table)

        @transactional(factory, policy=policy)
        def outer(session):
            state.outer_calls += 1
            session.execute(statements["bump2"])
            inner()
            on_commit(state.callback("outer"))

        outer()
    else:
        raise AssertionError(scenario.form)


@pytest.mark.postgres
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(pg, scenario):
    """Real serialization failures: attempts, nesting, savepoints, requires_new, on_commit."""
    engine, factory, table = pg
    state = State(scenario.conflicts)
    error = None
    try:
        run_form(scenario, state, factory, engine, table)
    except txpolicy.TransactionError as exc:
        error = exc
    outcome = state.outcome(*scenarios.rows(engine, table), error)

    assert scenario.expected == outcome
    assert 0 == engine.pool.checkedout()


# --- errors: what leaves a scope --------------------------------------------------------------


class Boom(Exception):
    """An application error."""


@pytest.mark.postgres
def test_non_database_error_propagates_unchanged_after_rollback(pg):
    """The same exception object leaves the scope, once, and the body's write is rolled back."""
    engine, factory, table = pg
    boom = Boom("not a database error")
    calls = []

    @transactional(factory, policy=FAST)
    def body(session):
        calls.append(1)
        session.execute(scenarios.sql(table)["bump1"])
        raise boom

    with pytest.raises(Boom) as info:
        body()

    assert boom is info.value
    assert [1] == calls
    assert (0, 0) == scenarios.rows(engine, table)
    assert 0 == engine.pool.checkedout()


@pytest.mark.postgres
def test_non_retryable_error_is_raised_after_one_attempt(pg, records):
    """A real unique violation: IntegrityError, attempts == 1, from SQLAlchemy's exception."""
    engine, factory, table = pg
    calls = []

    @transactional(factory, policy=FAST)
    def body(session):
        calls.append(1)
        session.execute(scenarios.sql(table)["duplicate"])

    with pytest.raises(IntegrityError) as info:
        body()

    assert [1] == calls
    assert 1 == info.value.attempts
    assert "23505" == info.value.sqlstate
    assert isinstance(info.value.__cause__, sa.exc.IntegrityError)
    assert [("give_up", "not_retryable")] == [(r.event, r.reason) for r in records]


def test_exhausted_policy_raises_the_last_error_with_attempts(locked, records):
    """Real "database is locked" errors until the policy runs out: attempts == N."""
    calls = []

    @transactional(locked, policy=RetryPolicy(attempts=4, wait_initial=0, wait_max=0))
    def insert(conn):
        calls.append(1)
        conn.exec_driver_sql("INSERT INTO t (id) VALUES (1)")

    with pytest.raises(LockTimeoutError) as info:
        insert()

    assert 4 == len(calls)
    assert 4 == info.value.attempts
    assert ["retry"] * 3 + ["give_up"] == [r.event for r in records]
    assert [1, 2, 3, 4] == [r.attempt for r in records]
    assert "attempts" == records[-1].reason


def test_deadline_stops_retrying_before_a_wait_would_cross_it(locked, records):
    """Waits of 0.1 s then 0.2 s with a 0.25 s deadline: the second wait is never taken."""
    policy = RetryPolicy(attempts=10, wait_initial=0.1, wait_max=1.0, jitter="none", deadline=0.25)

    @transactional(locked, policy=policy)
    def insert(conn):
        conn.exec_driver_sql("INSERT INTO t (id) VALUES (1)")

    with set_testing(False), pytest.raises(LockTimeoutError) as info:
        insert()

    assert 2 == info.value.attempts
    assert [("retry", 0.1), ("give_up", 0.0)] == [(r.event, r.wait) for r in records]
    assert "deadline" == records[-1].reason


def test_testing_mode_keeps_decisions_but_never_sleeps(locked, records, monkeypatch):
    """set_testing(): the same retries and attempt counts, and time.sleep is never called."""
    slept = []
    monkeypatch.setattr(txpolicy._sync.time, "sleep", slept.append)
    policy = RetryPolicy(attempts=3, wait_initial=5.0, wait_max=20.0, jitter="none", deadline=None)

    @transactional(locked, policy=policy)
    def insert(conn):
        conn.exec_driver_sql("INSERT INTO t (id) VALUES (1)")

    with pytest.raises(LockTimeoutError) as info:
        insert()
    with set_testing(False), pytest.raises(LockTimeoutError):
        insert()

    assert 3 == info.value.attempts
    assert [5.0, 10.0, 5.0, 10.0] == [r.wait for r in records if r.event == "retry"]
    assert [5.0, 10.0] == slept


def test_retry_budget_refuses_retries_once_half_empty(locked, records):
    """Two tokens, one retry allowed, then the budget refuses and says so on the error."""
    budget = RetryBudget(max_tokens=2, token_ratio=0.5)
    policy = RetryPolicy(attempts=5, wait_initial=0, wait_max=0, budget=budget)

    @transactional(locked, policy=policy)
    def insert(conn):
        conn.exec_driver_sql("INSERT INTO t (id) VALUES (1)")

    with pytest.raises(LockTimeoutError) as info:
        insert()

    assert 2 == info.value.attempts
    assert info.value.retry_refused_by_budget
    assert (1, 1, 1.0) == (budget.retries, budget.refused, budget.tokens)
    assert "budget" == records[-1].reason


def test_retry_budget_earns_tokens_on_success(sqlite_file):
    """Each committed call adds token_ratio, capped at max_tokens."""
    engine, _ = sqlite_file
    budget = RetryBudget(max_tokens=2, token_ratio=0.5)
    budget._try_spend()
    policy = RetryPolicy(budget=budget)

    @transactional(engine, policy=policy)
    def noop(conn):
        conn.exec_driver_sql("SELECT 1")

    noop()
    after_one = budget.tokens
    noop()
    noop()

    assert (1.5, 2.0) == (after_one, budget.tokens)


@pytest.mark.postgres
def test_terminated_connection_is_invalidated_and_retried_on_a_new_one(pg, records):
    """pg_terminate_backend during attempt 1: CONNECTION, invalidated, attempt 2 reconnects."""
    engine, factory, table = pg
    pids = []

    @transactional(factory, policy=FAST)
    def body(session):
        pid = session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        pids.append(pid)
        if len(pids) == 1:
            terminate(engine, pid)
        session.execute(scenarios.sql(table)["bump1"])

    body()

    assert 2 == len(pids)
    assert pids[0] != pids[1]
    assert [("retry", ErrorCategory.CONNECTION)] == [
        (r.event, r.category) for r in records if r.event != "success"
    ]
    assert (1, 0) == scenarios.rows(engine, table)
    assert 0 == engine.pool.checkedout()


def terminate(engine: sa.Engine, pid: int) -> None:
    """Terminate backend *pid* from another connection and wait until it is gone (≤ 10 s)."""
    with engine.connect() as admin:
        admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        for _ in range(1000):
            gone = admin.execute(
                sa.text("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            ).scalar_one()
            admin.rollback()
            if gone:
                return
            time.sleep(0.01)
    raise AssertionError(f"backend {pid} survived pg_terminate_backend")


@pytest.mark.postgres
@pytest.mark.parametrize("idempotent", [False, True], ids=["not-idempotent", "idempotent"])
def test_connection_lost_during_commit_is_commit_unknown(pg, records, idempotent):
    """The backend dies right before COMMIT: CommitUnknownError, retried only if idempotent."""
    engine, _, table = pg
    calls = []

    @transactional(engine, policy=FAST, idempotent=idempotent)
    def body(conn):
        calls.append(1)
        conn.execute(scenarios.sql(table)["bump1"])
        if len(calls) == 1:
            terminate(engine, conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())

    if idempotent:
        body()
        assert (2, (1, 0)) == (len(calls), scenarios.rows(engine, table))
        assert ErrorCategory.COMMIT_UNKNOWN == records[0].category
    else:
        with pytest.raises(CommitUnknownError) as info:
            body()
        assert (1, True, 1) == (len(calls), info.value.during_commit, info.value.attempts)
        assert (0, 0) == scenarios.rows(engine, table)
    assert 0 == engine.pool.checkedout()


@pytest.mark.postgres
def test_read_only_error_invalidates_and_retries(pg, records):
    """A write refused as read-only (25006) in a read-write scope: retried on a new connection."""
    engine, factory, table = pg
    pids = []

    @transactional(factory, policy=FAST)
    def body(session):
        pids.append(session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
        if len(pids) == 1:
            session.execute(sa.text("SET TRANSACTION READ ONLY"))
        session.execute(scenarios.sql(table)["bump1"])

    body()

    assert [ErrorCategory.READ_ONLY] == [r.category for r in records if r.event == "retry"]
    assert pids[0] != pids[1]
    assert (1, 0) == scenarios.rows(engine, table)


@pytest.mark.postgres
def test_read_only_scope_is_enforced_and_not_retried(pg):
    """read_only=True: PostgreSQL refuses the write and the scope does not retry it."""
    engine, factory, table = pg
    calls = []

    @transactional(factory, read_only=True, policy=FAST)
    def body(session):
        calls.append(session.execute(sa.text("SHOW transaction_read_only")).scalar_one())
        session.execute(scenarios.sql(table)["bump1"])

    with pytest.raises(ReadOnlyError) as info:
        body()

    assert (["on"], 1) == (calls, info.value.attempts)


@pytest.mark.postgres
def test_isolation_level_and_timeouts_apply_to_the_transaction_only(pg):
    """SET LOCAL semantics: inside the scope the settings hold; the pooled connection is clean."""
    engine, factory, _ = pg
    show = sa.text(
        "SELECT current_setting('transaction_isolation'), current_setting('lock_timeout'), "
        "current_setting('statement_timeout')"
    )
    scope = transactional(
        factory, isolation_level="serializable", lock_timeout=0.25, statement_timeout=1.5
    )

    with scope as session:
        inside = session.execute(show).one()
    with factory() as session:
        after = session.execute(show).one()

    assert ("serializable", "250ms", "1500ms") == tuple(inside)
    assert ("read committed", "0", "0") == tuple(after)


@pytest.mark.postgres
def test_lock_timeout_raises_lock_timeout_error(pg):
    """A row lock held elsewhere: the scope's 50 ms lock_timeout gives a real 55P03."""
    engine, factory, table = pg
    with engine.connect() as holder:
        holder.execute(scenarios.sql(table)["bump1"])
        scope = transactional(factory, lock_timeout=0.05, policy=RetryPolicy(attempts=1))
        with pytest.raises(LockTimeoutError) as info:
            with scope as session:
                session.execute(scenarios.sql(table)["bump1"])
        holder.rollback()

    assert "55P03" == info.value.sqlstate


@pytest.mark.postgres
def test_statement_timeout_is_not_retried(pg):
    """statement_timeout cancels pg_sleep (57014): a TimeoutError after one attempt."""
    _, factory, _ = pg
    calls = []

    @transactional(factory, statement_timeout=0.05, policy=FAST)
    def body(session):
        calls.append(1)
        session.execute(sa.text("SELECT pg_sleep(5)"))

    with pytest.raises(TimeoutError) as info:
        body()

    assert ([1], 1) == (calls, info.value.attempts)


@pytest.mark.mysql
def test_mariadb_settings_apply_and_are_restored(mysql_url, table_name):
    """Isolation, read-only, lock and statement timeouts on MariaDB; the session is restored."""
    engine = sa.create_engine(mysql_url, pool_size=1, max_overflow=0)
    show = sa.text(
        "SELECT @@tx_isolation, @@session.innodb_lock_wait_timeout, "
        "@@session.max_statement_time, @@global.innodb_lock_wait_timeout, "
        "@@global.max_statement_time"
    )
    try:
        scope = transactional(
            engine, isolation_level="SERIALIZABLE", lock_timeout=1.2, statement_timeout=0.5
        )
        with scope as conn:
            inside = conn.execute(show).one()
        with engine.connect() as conn:
            after = conn.execute(show).one()
            conn.exec_driver_sql(f"CREATE TABLE {table_name} (id INT PRIMARY KEY)")
        with pytest.raises(ReadOnlyError) as info:
            with transactional(engine, read_only=True) as conn:
                conn.exec_driver_sql(f"INSERT INTO {table_name} (id) VALUES (1)")
        with pytest.raises(TimeoutError):
            with transactional(engine, statement_timeout=0.05) as conn:
                conn.exec_driver_sql("SELECT SLEEP(5)")
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table_name}")
        engine.dispose()

    assert ("SERIALIZABLE", 2, 0.5) == tuple(inside)[:3]
    assert (after[3], after[4]) == (after[1], after[2])
    assert 1792 == info.value.vendor_code


@pytest.mark.postgres
def test_flush_error_at_commit_is_the_bodys_not_commits(pg):
    """A pending ORM object fails in the flush that commit() runs: not during_commit."""
    engine, factory, table = pg
    mapper = registry()

    class Row:
        def __init__(self, **values):
            self.__dict__.update(values)

    columns = [sa.Column(name, sa.Integer, primary_key=name == "id") for name in ("id", "n", "side")]
    mapper.map_imperatively(Row, sa.Table(table, mapper.metadata, *columns))

    @transactional(factory, policy=FAST)
    def body(session):
        session.add(Row(id=1, n=0, side=0))

    with pytest.raises(IntegrityError) as info:
        body()

    assert (False, 1) == (info.value.during_commit, info.value.attempts)


@pytest.mark.postgres
def test_deferred_constraint_violated_at_commit_keeps_its_category(pg_engine, table_name):
    """COMMIT reports a deferred unique violation: IntegrityError, during_commit, not retried."""
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE {table_name} (n INTEGER, UNIQUE (n) DEFERRABLE INITIALLY DEFERRED)"
        )
    calls = []

    @transactional(pg_engine, policy=FAST)
    def body(conn):
        calls.append(1)
        conn.exec_driver_sql(f"INSERT INTO {table_name} (n) VALUES (1), (1)")

    try:
        with pytest.raises(IntegrityError) as info:
            body()
    finally:
        scenarios.drop_table(pg_engine, table_name)

    assert ([1], True, "23505") == (calls, info.value.during_commit, info.value.sqlstate)


@pytest.mark.postgres
def test_savepoint_scope_timeouts_apply_inside_and_the_enclosing_ones_return(pg):
    """A nested scope's lock_timeout holds in its savepoint; released or rolled back, the
    enclosing scope's value is in force again."""
    _, factory, _ = pg
    show = sa.text("SELECT current_setting('lock_timeout')")
    seen = []

    @transactional(factory, propagation="nested", lock_timeout=0.05)
    def inner(session, fail):
        seen.append(session.execute(show).scalar_one())
        if fail:
            raise Boom

    @transactional(factory, lock_timeout=2)
    def outer(session):
        seen.append(session.execute(show).scalar_one())
        inner(False)
        seen.append(session.execute(show).scalar_one())
        with pytest.raises(Boom):
            inner(True)
        seen.append(session.execute(show).scalar_one())

    outer()

    assert ["2s", "50ms", "2s", "50ms", "2s"] == seen


@pytest.mark.mysql
def test_savepoint_scope_timeouts_on_mariadb_are_restored(mysql_url):
    """The same on MariaDB, where the timeout is a session variable restored by statements."""
    engine = sa.create_engine(mysql_url, pool_size=1, max_overflow=0)
    show = sa.text("SELECT @@session.innodb_lock_wait_timeout")
    seen = []

    @transactional(engine, propagation="nested", lock_timeout=3)
    def inner(conn, fail):
        seen.append(conn.execute(show).scalar_one())
        if fail:
            raise Boom

    @transactional(engine, lock_timeout=7)
    def outer(conn):
        seen.append(conn.execute(show).scalar_one())
        inner(False)
        seen.append(conn.execute(show).scalar_one())
        with pytest.raises(Boom):
            inner(True)
        seen.append(conn.execute(show).scalar_one())

    try:
        outer()
        with engine.connect() as conn:
            after, default = conn.execute(
                sa.text("SELECT @@session.innodb_lock_wait_timeout, @@global.innodb_lock_wait_timeout")
            ).one()
    finally:
        engine.dispose()

    assert [7, 3, 7, 3, 7] == seen
    assert default == after


# --- propagation --------------------------------------------------------------------------------


def test_required_joins_the_same_session_and_current_session_sees_it():
    """Nested decorated calls on one bind share the session; current_session() returns it."""
    engine = sa.create_engine("sqlite://")
    factory = sessionmaker(engine)
    seen = []

    @transactional(factory)
    def inner(session):
        seen.append((session, current_session()))

    @transactional(factory)
    def outer(session):
        seen.append((session, current_session()))
        inner()

    outer()
    engine.dispose()

    assert seen[0][0] is seen[1][0]
    assert all(session is current for session, current in seen)


def test_other_bind_is_independent():
    """A scope on another bind opens its own transaction; the innermost is current."""
    engine = sa.create_engine("sqlite://")
    first, second = sessionmaker(engine), sessionmaker(engine)
    seen = []

    @transactional(second)
    def inner(session):
        seen.append(session)
        assert current_session() is session

    @transactional(first)
    def outer(session):
        seen.append(session)
        inner()
        assert current_session() is session

    outer()
    engine.dispose()

    assert seen[0] is not seen[1]


def test_a_thread_started_inside_a_scope_does_not_join_it(tmp_path):
    """contextvars are copied into the thread, but it sees no active transaction."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.sqlite'}")
    factory = sessionmaker(engine)
    seen = {}

    @transactional(factory)
    def in_thread(session):
        seen["thread"] = session

    def child():
        try:
            current_session()
        except NoActiveTransaction:
            seen["no_active"] = True
        in_thread()

    @transactional(factory)
    def outer(session):
        seen["outer"] = session
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(child,))
        thread.start()
        thread.join(10)

    outer()
    engine.dispose()

    assert seen["no_active"]
    assert seen["thread"] is not seen["outer"]


def test_joining_with_another_isolation_level_fails_before_the_inner_body():
    """ConfigurationError (a ValueError) before the inner body runs; names compare loosely."""
    engine = sa.create_engine("sqlite://")
    factory = sessionmaker(engine)
    ran = []

    @transactional(factory, isolation_level="read-uncommitted")
    def same(session):
        ran.append("same")

    @transactional(factory, isolation_level="SERIALIZABLE")
    def other(session):
        ran.append("other")

    @transactional(factory)
    def unnamed_owner(session):
        other()

    @transactional(factory, isolation_level="READ UNCOMMITTED")
    def owner(session):
        same()
        with pytest.raises(ConfigurationError):
            other()

    owner()
    with pytest.raises(ConfigurationError):
        unnamed_owner()
    engine.dispose()

    assert ["same"] == ran


def test_read_write_scope_cannot_join_a_read_only_one():
    """read_only=False joining a read_only owner: ConfigurationError; the reverse is fine."""
    engine = sa.create_engine("sqlite://")
    factory = sessionmaker(engine)

    @transactional(factory, read_only=True)
    def reader(session):
        return "read"

    @transactional(factory)
    def writer(session):
        return reader()

    @transactional(factory, read_only=True)
    def read_only_owner(session):
        writer()

    assert "read" == writer()
    with pytest.raises(ConfigurationError):
        read_only_owner()
    engine.dispose()


def test_outside_a_scope_current_session_and_on_commit_raise():
    """NoActiveTransaction (a LookupError) outside any scope."""
    with pytest.raises(NoActiveTransaction):
        current_session()
    with pytest.raises(LookupError):
        on_commit(lambda: None)


def test_failing_on_commit_callback_is_logged_and_the_others_run(caplog):
    """A raising callback does not change the result, nor stop the callbacks after it."""
    engine = sa.create_engine("sqlite://")
    ran = []

    def broken():
        raise Boom

    @transactional(engine)
    def body(conn):
        on_commit(lambda: ran.append(1))
        on_commit(broken)
        on_commit(lambda: ran.append(3))
        return "result"

    with caplog.at_level(logging.ERROR, logger="txpolicy"):
        result = body()
    engine.dispose()

    assert ("result", [1, 3]) == (result, ran)
    assert 1 == len([r for r in caplog.records if r.exc_info and r.exc_info[0] is Boom])


def test_async_callback_in_a_sync_scope_is_a_type_error():
    """It could never run: TypeError at registration."""
    engine = sa.create_engine("sqlite://")

    async def callback():
        pass

    with transactional(engine):
        with pytest.raises(TypeError):
            on_commit(callback)
    engine.dispose()


def test_context_manager_and_block_forms_on_an_engine_yield_connections():
    """Engine binds yield Connection objects and commit them."""
    engine = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool)
    with transactional(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    for attempt in attempts(engine):
        with attempt as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (2)")
            kind = type(conn)
    with engine.connect() as conn:
        count = conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one()
    engine.dispose()

    assert (2, sa.Connection) == (count, kind)


# --- decoration and construction --------------------------------------------------------------


def test_decorator_keeps_name_docstring_and_signature_minus_session():
    """functools.wraps-like metadata, and inspect.signature without the session."""
    factory = sessionmaker()

    def transfer(session: Session, src: int, dst: int, *, amount: int = 1) -> str:
        """Move money."""
        return "ok"

    wrapped = transactional(factory)(transfer)

    assert "transfer" == wrapped.__name__
    assert "Move money." == wrapped.__doc__
    assert transfer is wrapped.__wrapped__
    expected = inspect.signature(transfer)
    expected = expected.replace(parameters=list(expected.parameters.values())[1:])
    assert expected == inspect.signature(wrapped)
    assert ["src", "dst", "amount"] == list(inspect.signature(wrapped).parameters)


def _generator(session):
    yield 1


async def _agen(session):
    yield 1


async def _coroutine(session):
    pass


def _no_positional(*, session):
    pass


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(42, id="not-callable"),
        pytest.param(_generator, id="generator"),
        pytest.param(_agen, id="async-generator"),
        pytest.param(_coroutine, id="coroutine-on-sync-bind"),
        pytest.param(_no_positional, id="no-positional-session"),
    ],
)
def test_bad_functions_fail_at_decoration(target):
    """TypeError when decorating, never at call time."""
    with pytest.raises(TypeError):
        transactional(sessionmaker())(target)


@pytest.mark.parametrize(
    ("bind", "kwargs", "error"),
    [
        pytest.param(Session(), {}, TypeError, id="session-instance"),
        pytest.param("sqlite://", {}, TypeError, id="url-string"),
        pytest.param(None, {}, TypeError, id="none"),
        pytest.param(sessionmaker(), {"propagation": "mandatory"}, ValueError, id="propagation"),
        pytest.param(sessionmaker(), {"isolation_level": "chaos"}, ValueError, id="isolation"),
        pytest.param(sessionmaker(), {"isolation_level": "AUTOCOMMIT"}, ValueError, id="autocommit"),
        pytest.param(sessionmaker(), {"isolation_level": 3}, TypeError, id="isolation-int"),
        pytest.param(sessionmaker(), {"lock_timeout": 0}, ValueError, id="lock-timeout-zero"),
        pytest.param(sessionmaker(), {"statement_timeout": -1}, ValueError, id="timeout-negative"),
        pytest.param(sessionmaker(), {"lock_timeout": "1s"}, TypeError, id="timeout-str"),
        pytest.param(sessionmaker(), {"read_only": 1}, TypeError, id="read-only-int"),
        pytest.param(sessionmaker(), {"idempotent": "yes"}, TypeError, id="idempotent-str"),
        pytest.param(sessionmaker(), {"policy": {"attempts": 3}}, TypeError, id="policy-dict"),
        pytest.param(sessionmaker(), {"user_context": "alice"}, TypeError, id="context-str"),
        pytest.param(sessionmaker(), {"operation_type": 3}, TypeError, id="operation-int"),
    ],
)
@pytest.mark.parametrize("factory", [transactional, attempts], ids=["transactional", "attempts"])
def test_bad_binds_and_options_fail_at_construction(factory, bind, kwargs, error):
    """Unsupported binds and bad options are refused when the scope is built."""
    with pytest.raises(error):
        factory(bind, **kwargs)


# --- logging and hooks --------------------------------------------------------------------------


def test_nothing_is_logged_when_nothing_fails(caplog):
    """The happy path is silent, at every level."""
    engine = sa.create_engine("sqlite://")

    @transactional(engine)
    def body(conn):
        return conn.exec_driver_sql("SELECT 1").scalar_one()

    with caplog.at_level(logging.DEBUG, logger="txpolicy"):
        body()
    engine.dispose()

    assert [] == caplog.records


def test_one_log_record_per_retry_and_per_give_up(locked, caplog):
    """INFO per retry and WARNING at give-up, with category, code, attempt and wait."""
    policy = RetryPolicy(attempts=3, wait_initial=0, wait_max=0)

    @transactional(locked, policy=policy, operation_type="insert_t")
    def insert(conn):
        conn.exec_driver_sql("INSERT INTO t (id) VALUES (1)")

    with caplog.at_level(logging.DEBUG, logger="txpolicy"), pytest.raises(LockTimeoutError):
        insert()
    mine = [r for r in caplog.records if r.name == "txpolicy.retry"]

    assert [logging.INFO, logging.INFO, logging.WARNING] == [r.levelno for r in mine]
    assert [1, 2, 3] == [r.txpolicy_attempt for r in mine]
    assert {"lock_timeout"} == {r.txpolicy_category for r in mine}
    assert {5} == {r.txpolicy_vendor_code for r in mine}
    assert {"insert_t"} == {r.txpolicy_operation for r in mine}
    assert "insert_t" in mine[0].getMessage()


def test_hooks_receive_immutable_records_and_a_failing_hook_is_harmless(locked):
    """add_hook: records per event; a raising hook is logged; the remover unregisters."""
    seen = []

    def broken(record):
        raise Boom

    removers = [add_hook("retry", seen.append), add_hook("retry", broken)]
    policy = RetryPolicy(attempts=2, wait_initial=0, wait_max=0)

    @transactional(locked, policy=policy)
    def insert(conn):
        conn.exec_driver_sql("INSERT INTO t (id) VALUES (1)")

    with pytest.raises(LockTimeoutError):
        insert()
    for remove in removers:
        remove()
    with pytest.raises(LockTimeoutError):
        insert()

    assert 1 == len(seen)
    assert ("retry", 1, ErrorCategory.LOCK_TIMEOUT) == (
        seen[0].event,
        seen[0].attempt,
        seen[0].category,
    )
    with pytest.raises(AttributeError):
        seen[0].attempt = 5


def test_add_hook_rejects_unknown_events_and_non_callables():
    """Bad registrations fail at once."""
    with pytest.raises(ValueError):
        add_hook("commit", print)
    with pytest.raises(TypeError):
        add_hook("retry", 3)
