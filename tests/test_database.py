"""Database: construction, named engines, get_session, tracking, statistics and listeners."""

from __future__ import annotations

import concurrent.futures
import datetime
import logging
import threading

import pytest
import sqlalchemy as sa

import txpolicy
from txpolicy import ContextIsolationError, Database, UserContext, user_context
from txpolicy._tracking import SessionEvent


@pytest.fixture
def sqlite_url(tmp_path):
    """A SQLite file shared by every connection of the test (in-memory is per connection)."""
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


@pytest.fixture
def db(sqlite_url):
    """A Database over a SQLite file with a table ``items``."""
    database = Database(sqlite_url)
    with database.get_session() as session:
        session.execute(sa.text("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)"))
    yield database
    database.close()


def count_items(database: Database) -> int:
    with database.get_session() as session:
        return session.execute(sa.text("SELECT count(*) FROM items")).scalar_one()


# -- construction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"exhaustion_threshold": 0}, ValueError, id="threshold-zero"),
        pytest.param({"exhaustion_threshold": 1.5}, ValueError, id="threshold-above-one"),
        pytest.param({"exhaustion_threshold": -0.1}, ValueError, id="threshold-negative"),
        pytest.param({"exhaustion_threshold": "0.9"}, TypeError, id="threshold-str"),
        pytest.param({"exhaustion_threshold": True}, TypeError, id="threshold-bool"),
        pytest.param({"pool_size": -1}, ValueError, id="pool-size-negative"),
        pytest.param({"pool_size": 0}, ValueError, id="pool-size-zero"),
        pytest.param({"pool_size": 2.5}, TypeError, id="pool-size-float"),
        pytest.param({"max_overflow": -1}, ValueError, id="max-overflow-negative"),
        pytest.param({"max_overflow": "5"}, TypeError, id="max-overflow-str"),
        pytest.param({"settings_prefix": "app.ctx"}, ValueError, id="prefix-dotted"),
        pytest.param({"settings_prefix": "1app"}, ValueError, id="prefix-digit"),
        pytest.param({"settings_prefix": "app; DROP TABLE x"}, ValueError, id="prefix-sql"),
        pytest.param({"settings_prefix": ""}, ValueError, id="prefix-empty"),
        pytest.param({"settings_prefix": 3}, TypeError, id="prefix-int"),
        pytest.param({"require_user_context": "yes"}, TypeError, id="require-str"),
        pytest.param({"policy": 3}, TypeError, id="policy-int"),
        pytest.param({"engine_options": {"pool_size": 3}}, ValueError, id="options-pool-size"),
        pytest.param({"engine_options": [("echo", True)]}, TypeError, id="options-list"),
        pytest.param({"session_options": {"bind": None}}, ValueError, id="session-bind"),
    ],
)
def test_bad_arguments_fail_at_construction(sqlite_url, kwargs, error):
    """Every invalid argument is refused when the database is built."""
    with pytest.raises(error):
        Database(sqlite_url, **kwargs)


@pytest.mark.parametrize(
    ("engines", "error"),
    [
        pytest.param({}, ValueError, id="empty-mapping"),
        pytest.param({"": "sqlite://"}, TypeError, id="empty-name"),
        pytest.param({3: "sqlite://"}, TypeError, id="int-name"),
        pytest.param(42, TypeError, id="int"),
        pytest.param({"a": 42}, TypeError, id="int-in-mapping"),
    ],
)
def test_bad_engines_fail_at_construction(engines, error):
    """An empty mapping, a bad name or something that is not a URL or an engine is refused."""
    with pytest.raises(error):
        Database(engines)


def test_async_engine_is_refused_by_database():
    """A Database needs sync engines; an AsyncEngine is a TypeError naming the expected type."""
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine("sqlite+aiosqlite://")
    with pytest.raises(TypeError, match="Engine"):
        Database(engine)
    engine.sync_engine.dispose()


def test_prefix_error_message_names_the_prefix(sqlite_url):
    """The error for a bad prefix says what is wrong with it."""
    with pytest.raises(ValueError, match="identifier") as info:
        Database(sqlite_url, settings_prefix="a-b")

    assert "'a-b'" in str(info.value)


def test_unknown_engine_name_lists_the_known_ones(sqlite_url):
    """get_session with an unknown engine name raises ValueError naming the engines there are."""
    with Database({"main": sqlite_url, "reports": sqlite_url}) as database:
        with pytest.raises(ValueError, match="'main', 'reports'"):
            with database.get_session("nope"):
                pass

        assert 0 == database.stats().total_sessions_created


def test_first_engine_answers_to_primary(tmp_path):
    """In a mapping without "primary", the first entry is the default and answers to it."""
    urls = {name: f"sqlite:///{tmp_path / name}.sqlite" for name in ("main", "reports")}
    with Database(urls) as database:
        with database.get_session() as session:
            default = session.get_bind().url.database
        with database.get_session("primary") as session:
            primary = session.get_bind().url.database
        with database.get_session("reports") as session:
            reports = session.get_bind().url.database
        names = database.stats().engines.keys()

    assert (urls["main"].removeprefix("sqlite:///"),) * 2 == (default, primary)
    assert urls["reports"].removeprefix("sqlite:///") == reports
    assert ["main", "reports"] == list(names)


def test_postgresql_url_uses_psycopg(postgres_url):
    """A bare postgresql:// URL gets psycopg 3 and the server pool settings."""
    url = sa.make_url(postgres_url).set(drivername="postgresql")
    with Database(url.render_as_string(hide_password=False), pool_size=3, max_overflow=4) as d:
        with d.get_session() as session:
            driver = session.get_bind().dialect.driver
        engine_stats = d.stats().engines["primary"]

    assert "psycopg" == driver
    assert (3, 7) == (engine_stats.size, engine_stats.capacity)


def test_sqlite_keeps_sqlalchemys_pool():
    """Pool settings do not apply to SQLite: an in-memory database keeps its own pool."""
    with Database("sqlite://", pool_size=3, max_overflow=4) as database:
        engine_stats = database.stats().engines["primary"]

    assert (0, None, None) == (engine_stats.size, engine_stats.capacity, engine_stats.utilisation)


def test_close_disposes_only_created_engines(sqlite_url, postgres_url):
    """close() disposes the engines built from URLs, and leaves an engine passed in usable."""
    mine = sa.create_engine(postgres_url)
    database = Database({"theirs": mine, "ours": sqlite_url})
    ours = database._adapter("ours").engine
    for name in ("theirs", "ours"):
        with database.get_session(name) as session:
            session.execute(sa.text("SELECT 1"))
    pools_before = (mine.pool, ours.pool)
    watcher = database._watchers[0]

    database.close()

    assert mine.pool is pools_before[0]
    assert ours.pool is not pools_before[1]
    assert not sa.event.contains(mine, "checkout", watcher._on_checkout)
    with mine.connect() as connection:
        assert 1 == connection.execute(sa.text("SELECT 1")).scalar_one()
    with pytest.raises(RuntimeError, match="closed"):
        with database.get_session():
            pass
    mine.dispose()


def test_close_is_idempotent_and_a_context_manager(sqlite_url):
    """Closing twice is harmless; ``with Database(...)`` closes on exit."""
    with Database(sqlite_url) as database:
        pass
    database.close()

    with pytest.raises(RuntimeError):
        with database.get_session():
            pass


# -- get_session ---------------------------------------------------------------------------------


def test_get_session_commits(db):
    """A block that ends normally is committed."""
    with db.get_session() as session:
        session.execute(sa.text("INSERT INTO items (name) VALUES ('a')"))

    assert 1 == count_items(db)


def test_get_session_rolls_back_and_reraises_the_same_error(db):
    """An application error rolls back and leaves unchanged (the very same object)."""
    error = KeyError("boom")

    with pytest.raises(KeyError) as info:
        with db.get_session() as session:
            session.execute(sa.text("INSERT INTO items (name) VALUES ('a')"))
            raise error

    assert error is info.value
    assert 0 == count_items(db)


def test_get_session_classifies_database_errors(db):
    """A database error leaves as a classified TransactionError raised from the original."""
    with pytest.raises(txpolicy.SchemaError) as info:
        with db.get_session() as session:
            session.execute(sa.text("SELECT * FROM no_such_table"))

    assert isinstance(info.value.__cause__, sa.exc.DBAPIError)


def test_get_session_always_opens_a_new_session(db):
    """Nested get_session calls open distinct sessions, each tracked."""
    with db.get_session() as outer, db.get_session() as inner:
        active = db.active_sessions()

    assert outer is not inner
    assert 2 == len(active)


def test_session_info_describes_the_session(db):
    """active_sessions() reports engine, user, tenant, operation, start time and owner thread."""
    before = datetime.datetime.now(datetime.timezone.utc)
    with db.get_session(user_context=UserContext("u1", "t1"), operation_type="checkout"):
        (info,) = db.active_sessions()

    assert ("primary", "u1", "t1", "checkout") == (
        info.engine_name,
        info.user_id,
        info.tenant_id,
        info.operation_type,
    )
    assert threading.current_thread().name == info.owner
    assert before <= info.started_at <= datetime.datetime.now(datetime.timezone.utc)
    assert () == db.active_sessions()


def test_session_ids_are_unique_in_the_process(db, tmp_path):
    """Two databases never hand out the same session id, and ids increase."""
    with Database(f"sqlite:///{tmp_path / 'other.sqlite'}") as other:
        with db.get_session(), other.get_session(), db.get_session(), other.get_session():
            ids = [info.session_id for info in (*db.active_sessions(), *other.active_sessions())]

    assert 4 == len(set(ids))
    assert sorted(ids[:2]) == ids[:2]


def test_bound_context_is_used_by_default(db):
    """Without user_context=, get_session uses the context bound to the thread."""
    with user_context(UserContext(7)), db.get_session():
        (info,) = db.active_sessions()

    assert 7 == info.user_id


def test_require_user_context_refuses_sessions(sqlite_url):
    """With require_user_context=True, no bound context means no transaction (and no session)."""
    with Database(sqlite_url, require_user_context=True) as database:
        with pytest.raises(ContextIsolationError, match="requires a user context"):
            with database.get_session():
                pass
        with user_context(UserContext("u")), database.get_session():
            pass
        stats = database.stats()

    assert (1, 1, 0) == (
        stats.total_sessions_created,
        stats.sessions_cleaned_up,
        stats.active_sessions_count,
    )


def test_bad_get_session_arguments_are_type_errors(db):
    """A user_context that is not a UserContext, or a non-string operation_type, is refused."""
    with pytest.raises(TypeError):
        with db.get_session(user_context="alice"):
            pass
    with pytest.raises(TypeError):
        with db.get_session(operation_type=3):
            pass

    assert 0 == db.stats().active_sessions_count


# -- statistics ----------------------------------------------------------------------------------


def test_stats_are_exact_after_a_threaded_workload(db):
    """8 threads x 25 sessions, a third of them raising: created == cleaned up, none active."""

    def work(n: int) -> None:
        for i in range(25):
            try:
                with db.get_session(operation_type="w") as session:
                    session.execute(sa.text("INSERT INTO items (name) VALUES (:n)"), {"n": n})
                    if i % 3 == 0:
                        raise ValueError(i)
            except ValueError:
                pass

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    stats = db.stats()

    assert (200 + 1, 200 + 1, 0) == (
        stats.total_sessions_created,
        stats.sessions_cleaned_up,
        stats.active_sessions_count,
    )
    assert 8 * (25 - 9) == count_items(db)


def test_stats_is_an_immutable_snapshot(db):
    """A PoolStats does not change afterwards and cannot be modified."""
    stats = db.stats()
    with db.get_session():
        pass

    assert stats.total_sessions_created + 1 == db.stats().total_sessions_created
    with pytest.raises(AttributeError):
        stats.total_sessions_created = 0
    with pytest.raises(TypeError):
        stats.retries_by_category[txpolicy.ErrorCategory.DEADLOCK] = 1


def test_retries_by_category_lists_every_category(db):
    """Every category is present in the retry counts, zero until something is retried."""
    stats = db.stats()

    assert dict.fromkeys(txpolicy.ErrorCategory, 0) == dict(stats.retries_by_category)


def test_owner_names_threads(db):
    """Sessions opened by different threads carry their threads' names."""
    barrier = threading.Barrier(3, timeout=10)
    owners = []

    def hold() -> None:
        with db.get_session():
            barrier.wait()
            barrier.wait()

    threads = [threading.Thread(target=hold, name=f"worker-{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    barrier.wait()
    owners = sorted(info.owner for info in db.active_sessions())
    barrier.wait()
    for thread in threads:
        thread.join(10)

    assert ["worker-0", "worker-1"] == owners


# -- listeners -----------------------------------------------------------------------------------


def test_session_events_are_delivered(db):
    """session_created and session_closed receive SessionEvent records; failed says how it ended."""
    records = []
    db.add_listener("session_created", records.append)
    db.add_listener("session_closed", records.append)

    with db.get_session(operation_type="ok"):
        pass
    with pytest.raises(ZeroDivisionError):
        with db.get_session(operation_type="bad"):
            1 / 0  # noqa: B018

    assert [
        ("session_created", "ok", False),
        ("session_closed", "ok", False),
        ("session_created", "bad", False),
        ("session_closed", "bad", True),
    ] == [(r.event, r.session.operation_type, r.failed) for r in records]
    assert all(isinstance(r, SessionEvent) for r in records)
    assert records[1].duration >= 0
    assert records[0].session == records[1].session


def test_remover_removes_the_listener(db):
    """The function add_listener returns unsubscribes; calling it twice is harmless."""
    records = []
    remove = db.add_listener("session_created", records.append)
    with db.get_session():
        pass
    remove()
    remove()
    with db.get_session():
        pass

    assert 1 == len(records)


def test_raising_listener_is_logged_and_harmless(db, caplog):
    """A listener that raises is logged on txpolicy.database; the transaction still commits."""
    seen = []

    def bad(record):
        raise RuntimeError("listener bug")

    db.add_listener("session_closed", bad)
    db.add_listener("session_closed", seen.append)
    with caplog.at_level(logging.ERROR, logger="txpolicy"):
        with db.get_session() as session:
            session.execute(sa.text("INSERT INTO items (name) VALUES ('a')"))

    logged = [r.name for r in caplog.records if "listener" in r.message]

    assert 1 == len(seen)
    assert ["txpolicy.database"] == logged
    assert 1 == count_items(db)


@pytest.mark.parametrize(
    ("event", "callback", "error"),
    [
        pytest.param("session_opened", print, ValueError, id="unknown-event"),
        pytest.param("retry", 3, TypeError, id="not-callable"),
    ],
)
def test_bad_listeners_are_refused(db, event, callback, error):
    """An unknown event is a ValueError; a callback that is not callable a TypeError."""
    with pytest.raises(error):
        db.add_listener(event, callback)


def test_async_listener_is_refused(db):
    """Listeners are called synchronously, so an async function is refused at once."""

    async def callback(record):
        pass

    with pytest.raises(TypeError, match="async"):
        db.add_listener("retry", callback)


# -- user context ---------------------------------------------------------------------------------


def test_user_context_compares_by_value_and_is_frozen():
    """UserContext is immutable, hashable and equal by value."""
    ctx = UserContext("u", tenant_id=3)

    assert UserContext("u", 3) == ctx
    assert UserContext("u") != ctx
    assert UserContext(7) != UserContext("7")
    assert 1 == len({ctx, UserContext("u", 3)})
    with pytest.raises(AttributeError):
        ctx.user_id = "v"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        pytest.param(("",), ValueError, id="empty-user"),
        pytest.param(("a\x00b",), ValueError, id="nul-user"),
        pytest.param((None,), TypeError, id="no-user"),
        pytest.param((True,), TypeError, id="bool-user"),
        pytest.param((1.5,), TypeError, id="float-user"),
        pytest.param(("u", ""), ValueError, id="empty-tenant"),
        pytest.param(("u", b"t"), TypeError, id="bytes-tenant"),
    ],
)
def test_user_context_validates(args, error):
    """Ids must be non-empty strings or ints: an empty id could not be told from "no context"."""
    with pytest.raises(error):
        UserContext(*args)


def test_user_context_binds_and_restores():
    """user_context() binds for the block, nests, and restores the previous binding."""
    a, b = UserContext("a"), UserContext("b")
    seen = []
    with user_context(a):
        seen.append(txpolicy._context.current_user_context())
        with user_context(b):
            seen.append(txpolicy._context.current_user_context())
        with user_context(None):
            seen.append(txpolicy._context.current_user_context())
        seen.append(txpolicy._context.current_user_context())
    seen.append(txpolicy._context.current_user_context())

    assert [a, b, None, a, None] == seen


def test_user_context_restores_on_error():
    """The binding is undone when the block raises."""
    with pytest.raises(ValueError), user_context(UserContext("a")):
        raise ValueError

    assert txpolicy._context.current_user_context() is None


def test_user_context_is_per_thread():
    """Another thread does not see the context bound in this one."""
    seen = []
    with user_context(UserContext("a")):
        thread = threading.Thread(
            target=lambda: seen.append(txpolicy._context.current_user_context())
        )
        thread.start()
        thread.join(10)

    assert [None] == seen


def test_user_context_refuses_other_types():
    """Binding something that is not a UserContext is a TypeError."""
    with pytest.raises(TypeError):
        with user_context("alice"):
            pass


# -- transactional() bound to a database ---------------------------------------------------------


def test_decorated_function_is_tracked_under_its_qualname(db):
    """A decorated function's session is tracked with its __qualname__ as operation type."""
    seen = []

    @db.transactional()
    def add_item(session, name):
        seen.extend(db.active_sessions())
        session.execute(sa.text("INSERT INTO items (name) VALUES (:n)"), {"n": name})

    add_item("a")
    stats = db.stats()

    assert [add_item.__qualname__] == [info.operation_type for info in seen]
    assert "test_decorated_function_is_tracked_under_its_qualname.<locals>.add_item" == (
        seen[0].operation_type
    )
    assert (2, 2, 0) == (
        stats.total_sessions_created,
        stats.sessions_cleaned_up,
        stats.active_sessions_count,
    )
    assert 1 == count_items(db)


def test_top_level_transactional_accepts_the_database(db):
    """txpolicy.transactional(db) runs on the default engine, tracked like db.transactional()."""

    @txpolicy.transactional(db, operation_type="top")
    def add_item(session):
        session.execute(sa.text("INSERT INTO items (name) VALUES ('a')"))
        return [info.operation_type for info in db.active_sessions()]

    assert ["top"] == add_item()
    assert 1 == count_items(db)


def test_decorated_functions_join_get_session(db):
    """Inside get_session, a decorated function of the same database joins its session."""
    sessions = []

    @db.transactional()
    def add_item(session, name):
        sessions.append(session)
        session.execute(sa.text("INSERT INTO items (name) VALUES (:n)"), {"n": name})

    with pytest.raises(RuntimeError):
        with db.get_session() as outer:
            add_item("a")
            add_item("b")
            created_inside = db.stats().total_sessions_created
            raise RuntimeError("roll it all back")

    assert [outer, outer] == sessions
    assert 1 + 1 == created_inside
    assert 0 == count_items(db)


def test_attempts_block_is_tracked(db):
    """db.attempts() yields tracked sessions and commits the block."""
    for attempt in db.attempts(operation_type="block"):
        with attempt as session:
            session.execute(sa.text("INSERT INTO items (name) VALUES ('a')"))
            (info,) = db.active_sessions()

    assert "block" == info.operation_type
    assert 1 == count_items(db)


def test_unknown_engine_name_fails_at_decoration(db):
    """db.transactional(engine_name=...) checks the name when the scope is built."""
    with pytest.raises(ValueError, match="'primary'"):
        db.transactional(engine_name="replica")


def test_scopes_on_different_engines_are_independent(tmp_path):
    """A scope on another engine of the same database owns its own session."""
    urls = {name: f"sqlite:///{tmp_path / name}.sqlite" for name in ("main", "audit")}
    with Database(urls) as database:

        @database.transactional(engine_name="audit")
        def audit(session):
            return session

        @database.transactional()
        def main(session):
            return session, audit()

        outer, inner = main()
        stats = database.stats()

    assert outer is not inner
    assert 2 == stats.total_sessions_created


def test_scope_user_context_is_tracked(db):
    """The scope's user_context= argument is the context its session is tracked under."""

    @db.transactional(user_context=UserContext("u1", "t1"))
    def work(session):
        return db.active_sessions()

    (info,) = work()

    assert ("u1", "t1") == (info.user_id, info.tenant_id)


def test_joining_another_users_transaction_is_refused_and_counted(db):
    """A scope with another user's context cannot join: ContextIsolationError, counted once."""
    ran = []

    @db.transactional(user_context=UserContext("bob"))
    def as_bob(session):
        ran.append("bob")

    @db.transactional(user_context=UserContext("alice"))
    def as_alice(session):
        as_bob()

    with pytest.raises(ContextIsolationError):
        as_alice()
    stats = db.stats()

    assert [] == ran
    assert 1 == stats.context_isolation_violations
    assert (1 + 1, 1 + 1, 0) == (  # the fixture's session, then as_alice's
        stats.total_sessions_created,
        stats.sessions_cleaned_up,
        stats.active_sessions_count,
    )


def test_joining_without_context_inherits_the_owners(db):
    """A joining scope with no context of its own joins (same session); no violation."""

    @db.transactional()
    def inner(session):
        return session

    @db.transactional(user_context=UserContext("alice"))
    def outer(session):
        return session, inner()

    owner_session, joined_session = outer()

    assert owner_session is joined_session
    assert 0 == db.stats().context_isolation_violations


def test_get_session_for_another_user_inside_a_transaction(db):
    """get_session(user_context=B) inside A's transaction opens B's own session: no violation."""

    @db.transactional(user_context=UserContext("alice"))
    def as_alice(session):
        with db.get_session(user_context=UserContext("bob")) as other:
            infos = db.active_sessions()
            return session is other, [info.user_id for info in infos]

    same, users = as_alice()

    assert (False, ["alice", "bob"]) == (same, users)
    assert 0 == db.stats().context_isolation_violations


def test_require_user_context_refuses_decorated_calls(sqlite_url):
    """require_user_context=True refuses a decorated call without context, before its body."""
    ran = []
    with Database(sqlite_url, require_user_context=True) as database:

        @database.transactional()
        def work(session):
            ran.append(1)

        with pytest.raises(ContextIsolationError):
            work()
        with user_context(UserContext("u")):
            work()
        stats = database.stats()

    assert [1] == ran
    assert (1, 0) == (stats.total_sessions_created, stats.context_isolation_violations)


@pytest.fixture
def pg_counter(pg_engine, table_name):
    """A one-row table on PostgreSQL for provoking real serialization failures."""
    with pg_engine.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE {table_name} (id int PRIMARY KEY, n int)"))
        connection.execute(sa.text(f"INSERT INTO {table_name} VALUES (1, 0)"))
    yield table_name
    with pg_engine.begin() as connection:
        connection.execute(sa.text(f"DROP TABLE {table_name}"))


def test_retries_are_counted_and_delivered(pg_engine, pg_counter, postgres_url):
    """A real serialization failure: one retry counted under its category, one session per attempt."""
    records = []
    policy = txpolicy.RetryPolicy(wait_initial=0.001, wait_max=0.002)
    with Database(postgres_url, pool_size=2, policy=policy) as database:
        database.add_listener("retry", records.append)
        database.add_listener("give_up", records.append)

        @database.transactional(isolation_level="REPEATABLE READ")
        def bump(session):
            session.execute(sa.text(f"SELECT n FROM {pg_counter} WHERE id = 1"))
            if not records:
                with pg_engine.begin() as connection:
                    connection.execute(sa.text(f"UPDATE {pg_counter} SET n = n + 1"))
            session.execute(sa.text(f"UPDATE {pg_counter} SET n = n + 1"))

        bump()
        stats = database.stats()

    assert [("retry", txpolicy.ErrorCategory.SERIALIZATION)] == [
        (r.event, r.category) for r in records
    ]
    assert 1 == stats.retries_by_category[txpolicy.ErrorCategory.SERIALIZATION]
    assert 1 == sum(stats.retries_by_category.values())
    assert (2, 2, 0) == (
        stats.total_sessions_created,
        stats.sessions_cleaned_up,
        stats.active_sessions_count,
    )


def test_give_up_is_counted_and_delivered(pg_engine, pg_counter, postgres_url):
    """With one attempt, the serialization failure gives up: counted and delivered once."""
    records = []
    policy = txpolicy.RetryPolicy(attempts=1)
    with Database(postgres_url, pool_size=2, policy=policy) as database:
        database.add_listener("give_up", records.append)

        @database.transactional(isolation_level="REPEATABLE READ")
        def bump(session):
            session.execute(sa.text(f"SELECT n FROM {pg_counter} WHERE id = 1"))
            with pg_engine.begin() as connection:
                connection.execute(sa.text(f"UPDATE {pg_counter} SET n = n + 1"))
            session.execute(sa.text(f"UPDATE {pg_counter} SET n = n + 1"))

        with pytest.raises(txpolicy.SerializationError):
            bump()
        stats = database.stats()

    assert [txpolicy.ErrorCategory.SERIALIZATION] == [r.category for r in records]
    assert 1 == stats.give_ups_by_category[txpolicy.ErrorCategory.SERIALIZATION]
    assert 0 == sum(stats.retries_by_category.values())


def test_stats_after_close_keep_the_engines(sqlite_url):
    """close() detaches the pool listeners but stats() still reports the final figures."""
    database = Database({"main": sqlite_url})
    with database.get_session():
        pass
    database.close()
    stats = database.stats()

    assert ["main"] == list(stats.engines)
    assert (1, 1, 0) == (
        stats.total_sessions_created,
        stats.sessions_cleaned_up,
        stats.engines["main"].checked_out,
    )



def test_engine_options_choosing_another_pool(postgres_url):
    """engine_options may pick a NullPool: the pool settings are then not applied (unbounded)."""
    with Database(postgres_url, engine_options={"poolclass": sa.pool.NullPool}) as database:
        with database.get_session() as session:
            value = session.execute(sa.text("SELECT 1")).scalar_one()
        engine_stats = database.stats().engines["primary"]

    assert 1 == value
    assert (None, 0) == (engine_stats.capacity, engine_stats.checked_out)


# -- the context statements, as data ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "context", "expected_params"),
    [
        pytest.param(
            "postgresql",
            UserContext(7, "t"),
            {
                "txpolicy_user_name": "app.user_id",
                "txpolicy_user_id": "7",
                "txpolicy_tenant_name": "app.tenant_id",
                "txpolicy_tenant_id": "t",
            },
            id="pg",
        ),
        pytest.param(
            "postgresql",
            None,
            {
                "txpolicy_user_name": "app.user_id",
                "txpolicy_user_id": "",
                "txpolicy_tenant_name": "app.tenant_id",
                "txpolicy_tenant_id": "",
            },
            id="pg-no-context",
        ),
        pytest.param(
            "mariadb", UserContext("u"), {"txpolicy_user_id": "u", "txpolicy_tenant_id": None}, id="mariadb"
        ),
        pytest.param(
            "mysql", None, {"txpolicy_user_id": None, "txpolicy_tenant_id": None}, id="mysql-no-context"
        ),
    ],
)
def test_setup_statements_bind_every_value(dialect, context, expected_params):
    """Values (and PostgreSQL setting names) are bind parameters; the SQL text never holds them."""
    statements = txpolicy._context._ContextStatements("app")
    (statement,) = statements.setup(dialect, context)

    assert expected_params == dict(statement.params)
    assert statements.setup(dialect, UserContext("other", "x"))[0].sql == statement.sql


def test_statements_per_dialect():
    """SQLite gets nothing; only MySQL / MariaDB need a teardown, which sets NULL."""
    statements = txpolicy._context._ContextStatements("app")

    assert () == tuple(statements.setup("sqlite", UserContext("u")))
    assert () == tuple(statements.teardown("postgresql"))
    assert ["SET @app_user_id = NULL, @app_tenant_id = NULL"] == [
        s.sql for s in statements.teardown("mysql")
    ]
    assert statements.setup("mysql", None)[0].sql.startswith("SET @app_user_id = :")
