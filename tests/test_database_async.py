"""AsyncDatabase: sessions, tracking under tasks and cancellation, context per task."""

from __future__ import annotations

import asyncio

import anyio
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from txpolicy import AsyncDatabase, ContextIsolationError, UserContext, user_context

from .fix_db import url_for_driver

pytestmark = pytest.mark.anyio

CONTEXT = sa.text(
    "SELECT current_setting('txpolicy.user_id', true), current_setting('txpolicy.tenant_id', true)"
)


@pytest.fixture(
    params=[
        pytest.param("postgresql+psycopg", id="psycopg"),
        pytest.param("postgresql+asyncpg", id="asyncpg"),
    ]
)
async def pg_db(request, postgres_url):
    """An AsyncDatabase on the PostgreSQL server through each async driver."""
    database = AsyncDatabase(url_for_driver(postgres_url, request.param), pool_size=5)
    yield database
    await database.aclose()


@pytest.fixture
async def sqlite_db(tmp_path):
    """An AsyncDatabase on a SQLite file through aiosqlite (from a bare sqlite:// URL)."""
    database = AsyncDatabase(f"sqlite:///{tmp_path / 'db.sqlite'}")
    async with database.get_session() as session:
        await session.execute(sa.text("CREATE TABLE items (id INTEGER PRIMARY KEY, n INTEGER)"))
    yield database
    await database.aclose()


async def settled(database: AsyncDatabase) -> None:
    """Wait (at most 10 s) until shielded cleanups have closed every session."""
    with anyio.fail_after(10):
        while database.stats().active_sessions_count:
            await anyio.sleep(0.01)


def counts(database: AsyncDatabase) -> tuple[int, int, int]:
    stats = database.stats()
    return (stats.total_sessions_created, stats.sessions_cleaned_up, stats.active_sessions_count)


async def test_context_reaches_postgres(pg_db):
    """Inside get_session the context is visible to SQL; without one, both settings are ''."""
    async with pg_db.get_session(user_context=UserContext(5, "t9")) as session:
        inside = tuple((await session.execute(CONTEXT)).one())
        assert isinstance(session, AsyncSession)
    async with pg_db.get_session() as session:
        empty = tuple((await session.execute(CONTEXT)).one())

    assert ("5", "t9") == inside
    assert ("", "") == empty


async def test_bare_postgresql_url_uses_psycopg_async(postgres_url):
    """A bare postgresql:// URL gives psycopg 3's async driver."""
    url = sa.make_url(postgres_url).set(drivername="postgresql")
    database = AsyncDatabase(url.render_as_string(hide_password=False), pool_size=2)
    try:
        async with database.get_session() as session:
            dialect = session.get_bind().dialect
    finally:
        await database.aclose()

    assert ("psycopg", True) == (dialect.driver, dialect.is_async)


async def test_sync_engine_is_refused(postgres_url):
    """An AsyncDatabase needs AsyncEngine objects."""
    engine = sa.create_engine(postgres_url)
    with pytest.raises(TypeError, match="AsyncEngine"):
        AsyncDatabase(engine)
    engine.dispose()


async def test_aclose_disposes_created_engines_only(postgres_url, tmp_path):
    """aclose() disposes the engines built from URLs and leaves the caller's engine alone."""
    theirs = create_async_engine(url_for_driver(postgres_url, "postgresql+psycopg"))
    database = AsyncDatabase({"theirs": theirs, "ours": f"sqlite:///{tmp_path / 'x.sqlite'}"})
    ours = database._adapter("ours").engine
    for name in ("theirs", "ours"):
        async with database.get_session(name) as session:
            await session.execute(sa.text("SELECT 1"))
    before = (theirs.sync_engine.pool, ours.sync_engine.pool)

    async with database:
        pass

    assert theirs.sync_engine.pool is before[0]
    assert ours.sync_engine.pool is not before[1]
    async with theirs.connect() as connection:
        assert 1 == (await connection.execute(sa.text("SELECT 1"))).scalar_one()
    await theirs.dispose()


async def test_owner_is_the_task_name(sqlite_db):
    """SessionInfo.owner names the asyncio task that opened the session."""

    async def named() -> str:
        async with sqlite_db.get_session():
            (info,) = sqlite_db.active_sessions()
            return info.owner

    owner = await asyncio.create_task(named(), name="billing-task")

    assert "billing-task" == owner


async def test_child_tasks_inherit_the_context_and_siblings_are_isolated(pg_db):
    """A task started inside user_context() sees it; concurrent tasks keep their own."""
    seen = {}

    async def read(name: str) -> None:
        async with pg_db.get_session() as session:
            seen[name] = (await session.execute(CONTEXT)).one()[0]

    async def as_user(user: str) -> None:
        with user_context(UserContext(user)):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read, f"{user}-child")
            await read(user)

    async with anyio.create_task_group() as tg:
        for user in ("ann", "bob", "cid"):
            tg.start_soon(as_user, user)

    assert {
        "ann": "ann",
        "ann-child": "ann",
        "bob": "bob",
        "bob-child": "bob",
        "cid": "cid",
        "cid-child": "cid",
    } == seen


async def test_require_user_context_refuses_async_sessions(postgres_url):
    """require_user_context=True refuses a session with no bound context, before any I/O."""
    database = AsyncDatabase(
        url_for_driver(postgres_url, "postgresql+psycopg"), require_user_context=True
    )
    try:
        with pytest.raises(ContextIsolationError):
            async with database.get_session():
                pass
        stats = counts(database)
    finally:
        await database.aclose()

    assert (0, 0, 0) == stats


async def test_stats_exact_with_raising_and_cancelled_tasks(pg_db):
    """
    100 tasks: a third raise, a third are cancelled mid-transaction, a third commit.

    Every session is cleaned up and none is left active.
    """
    started = 0
    all_started = anyio.Event()
    total = 99

    async def worker(i: int) -> None:
        nonlocal started
        async with pg_db.get_session(operation_type=f"w{i % 3}") as session:
            await session.execute(sa.text("SELECT 1"))
            if i % 3 == 0:
                raise ValueError(i)
            if i % 3 == 1:
                started += 1
                if started == total // 3:
                    all_started.set()
                await anyio.sleep_forever()

    async def guarded(i: int) -> None:
        try:
            await worker(i)
        except ValueError:
            pass

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for i in range(total):
                tg.start_soon(guarded, i)
            await all_started.wait()
            tg.cancel_scope.cancel()

    # Like SQLAlchemy's AsyncSession.__aexit__, txpolicy shields the cleanup of a cancelled
    # task from the cancellation: it may finish just after the task itself. Bounded wait.
    await settled(pg_db)

    assert (total, total, 0) == counts(pg_db)
    assert () == pg_db.active_sessions()
    assert 0 == pg_db.stats().engines["primary"].checked_out


async def test_cancelled_while_waiting_for_the_server(pg_db):
    """A task cancelled inside a slow statement is cleaned up and its connection released."""
    with anyio.move_on_after(0.5):
        async with pg_db.get_session() as session:
            await session.execute(sa.text("SELECT pg_sleep(30)"))
    await settled(pg_db)

    assert (1, 1, 0) == counts(pg_db)


async def test_session_events_in_async(sqlite_db):
    """Listeners receive created/closed records from async sessions too."""
    records = []
    sqlite_db.add_listener("session_created", records.append)
    sqlite_db.add_listener("session_closed", records.append)
    with pytest.raises(KeyError):
        async with sqlite_db.get_session(operation_type="bad"):
            raise KeyError("x")

    assert [("session_created", False), ("session_closed", True)] == [
        (r.event, r.failed) for r in records
    ]


async def test_sqlite_async_commits_and_rolls_back(sqlite_db):
    """aiosqlite: commit on success, rollback on error, no context statements needed."""
    async with sqlite_db.get_session() as session:
        await session.execute(sa.text("INSERT INTO items (n) VALUES (1)"))
    with pytest.raises(RuntimeError):
        async with sqlite_db.get_session() as session:
            await session.execute(sa.text("INSERT INTO items (n) VALUES (2)"))
            raise RuntimeError
    async with sqlite_db.get_session() as session:
        rows = (await session.execute(sa.text("SELECT n FROM items"))).scalars().all()

    assert [1] == rows


async def test_decorated_coroutine_joins_get_session(sqlite_db):
    """A decorated coroutine function joins get_session's session; tracked by qualname."""
    seen = []

    @sqlite_db.transactional()
    async def add(session, n):
        seen.append((session, [info.operation_type for info in sqlite_db.active_sessions()]))
        await session.execute(sa.text("INSERT INTO items (n) VALUES (:n)"), {"n": n})

    await add(1)
    async with sqlite_db.get_session(operation_type="outer") as outer:
        await add(2)
    async with sqlite_db.get_session() as session:
        rows = (await session.execute(sa.text("SELECT n FROM items ORDER BY n"))).scalars().all()

    assert [add.__qualname__] == seen[0][1]
    assert (outer, ["outer"]) == seen[1]
    assert [1, 2] == rows


async def test_async_violation_is_counted(sqlite_db):
    """An async scope of another user cannot join: ContextIsolationError, counted."""

    @sqlite_db.transactional(user_context=UserContext("bob"))
    async def as_bob(session):
        raise AssertionError("must not run")

    @sqlite_db.transactional(user_context=UserContext("alice"))
    async def as_alice(session):
        await as_bob()

    with pytest.raises(ContextIsolationError):
        await as_alice()

    assert 1 == sqlite_db.stats().context_isolation_violations
    assert 0 == sqlite_db.stats().active_sessions_count


async def test_async_attempts_block(sqlite_db):
    """AsyncDatabase.attempts() yields tracked AsyncSessions."""
    async for attempt in sqlite_db.attempts(operation_type="block"):
        async with attempt as session:
            await session.execute(sa.text("INSERT INTO items (n) VALUES (7)"))
            (info,) = sqlite_db.active_sessions()

    assert "block" == info.operation_type
