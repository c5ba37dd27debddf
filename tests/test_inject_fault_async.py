"""inject_fault() on async binds: asyncpg, psycopg (async) and aiosqlite, against the real servers."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time

import asyncpg
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

import txpolicy
from txpolicy import ErrorCategory as C
from tests.fix_db import url_for_driver
from txpolicy.testing import inject_fault, set_testing

pytestmark = pytest.mark.anyio

AT = pytest.mark.parametrize("at", ["statement", "commit"])

# asyncpg's own class per SQLSTATE, and the DBAPI class SQLAlchemy's adapter translates it to.
A = asyncpg.exceptions
D = AsyncAdapt_asyncpg_dbapi
ASYNCPG = [
    pytest.param(C.DEADLOCK, "40P01", A.DeadlockDetectedError, D.Error, id="deadlock"),
    pytest.param(C.SERIALIZATION, "40001", A.SerializationError, D.Error, id="serialization"),
    pytest.param(C.LOCK_TIMEOUT, "55P03", A.LockNotAvailableError, D.Error, id="lock_timeout"),
    pytest.param(C.CONNECTION, "08003", A.ConnectionDoesNotExistError, D.Error, id="connection"),
    pytest.param(C.READ_ONLY, "25006", A.ReadOnlySQLTransactionError, D.Error, id="read_only"),
    pytest.param(C.RESOURCE, "53300", A.TooManyConnectionsError, D.Error, id="resource"),
    pytest.param(C.STATEMENT_TIMEOUT, "57014", A.QueryCanceledError, D.Error, id="statement_timeout"),
    pytest.param(
        C.COMMIT_UNKNOWN, "40003", A.StatementCompletionUnknownError, D.Error, id="commit_unknown"
    ),
    pytest.param(C.INTEGRITY, "23505", A.UniqueViolationError, D.UniqueViolationError, id="integrity"),
    pytest.param(C.DATA, "22P02", A.InvalidTextRepresentationError, D.Error, id="data"),
    pytest.param(
        C.PERMISSION, "42501", A.InsufficientPrivilegeError, D.ProgrammingError, id="permission"
    ),
    pytest.param(C.SCHEMA, "42P01", A.UndefinedTableError, D.ProgrammingError, id="schema"),
    pytest.param(C.UNKNOWN, "XX000", A.InternalServerError, D.InternalServerError, id="unknown"),
]

POSTGRES = [
    pytest.param(category, sqlstate, id=str(param.id))
    for param in ASYNCPG
    for category, sqlstate in [param.values[:2]]
]
# psycopg reports the terminated backend's own FATAL 57P01; asyncpg reports the lost connection.
POSTGRES[3] = pytest.param(C.CONNECTION, "57P01", id="connection")

SQLITE = [
    pytest.param(C.LOCK_TIMEOUT, sqlite3.OperationalError, 5, id="lock_timeout"),
    pytest.param(
        C.SERIALIZATION,
        sqlite3.OperationalError,
        517,
        id="serialization",
        marks=pytest.mark.skipif(
            sys.version_info < (3, 11), reason="sqlite_errorcode exists from Python 3.11"
        ),
    ),
    pytest.param(C.INTEGRITY, sqlite3.IntegrityError, 2067, id="integrity"),
    pytest.param(C.DATA, sqlite3.DataError, 18, id="data"),
    pytest.param(C.SCHEMA, sqlite3.OperationalError, 1, id="schema"),
]


@pytest.fixture
async def asyncpg_engine(postgres_url):
    """An asyncpg engine on the test server."""
    engine = create_async_engine(url_for_driver(postgres_url, "postgresql+asyncpg"))
    yield engine
    await engine.dispose()


@pytest.fixture
async def psycopg_engine(postgres_url):
    """A psycopg (async) engine on the test server."""
    engine = create_async_engine(postgres_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def aiosqlite_engine(tmp_path):
    """An aiosqlite engine on a file."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    yield engine
    await engine.dispose()


@pytest.fixture(params=["asyncpg", "psycopg"])
def server_engine(request):
    """The same test on asyncpg and psycopg (async)."""
    return request.getfixturevalue(f"{request.param}_engine")


@pytest.fixture(params=["asyncpg", "psycopg", "aiosqlite"])
def engine(request):
    """The same test on asyncpg, psycopg (async) and aiosqlite."""
    return request.getfixturevalue(f"{request.param}_engine")


async def fail_once(engine: AsyncEngine, at: str) -> sa.exc.DBAPIError:
    """Run one statement and one COMMIT; return the error that one of them raised."""
    async with engine.connect() as conn:
        with pytest.raises(sa.exc.DBAPIError) as info:
            await conn.execute(sa.text("SELECT 1"))
            if at == "commit":
                await conn.commit()
    return info.value


async def answer(engine: AsyncEngine) -> int:
    """A statement whose result only the real server gives."""
    async with engine.connect() as conn:
        return (await conn.execute(sa.text("SELECT 40 + 2"))).scalar_one()


def category_of(error: BaseException) -> C:
    return txpolicy.classify_error(error).category


# -- each driver, each category -------------------------------------------------------------------


@AT
@pytest.mark.parametrize(("category", "sqlstate", "asyncpg_cls", "dbapi_cls"), ASYNCPG)
async def test_asyncpg_arrives_through_sqlalchemys_adapter(
    asyncpg_engine, category, sqlstate, asyncpg_cls, dbapi_cls, at
):
    """asyncpg: .orig is SQLAlchemy's emulated DBAPI error wrapping asyncpg's own class."""
    with inject_fault(asyncpg_engine, category, at=at) as handle:
        error = await fail_once(asyncpg_engine, at)

    assert dbapi_cls is type(error.orig)
    assert asyncpg_cls is type(error.orig.__cause__)
    assert sqlstate == error.orig.sqlstate == error.orig.__cause__.sqlstate
    assert (category is C.CONNECTION) is error.connection_invalidated
    assert 1 == handle.fired
    assert category == category_of(error)
    assert 42 == await answer(asyncpg_engine)


@AT
@pytest.mark.parametrize(("category", "sqlstate"), POSTGRES)
async def test_async_psycopg_raises_the_driver_class(psycopg_engine, category, sqlstate, at):
    """psycopg's async connection: .orig is the psycopg class of the SQLSTATE."""
    with inject_fault(psycopg_engine, category, at=at) as handle:
        error = await fail_once(psycopg_engine, at)

    assert psycopg.errors.lookup(sqlstate) is type(error.orig)
    assert (category is C.CONNECTION) is error.connection_invalidated
    assert 1 == handle.fired
    assert category == category_of(error)
    assert 42 == await answer(psycopg_engine)


@AT
@pytest.mark.parametrize(("category", "cls", "code"), SQLITE)
async def test_aiosqlite_reraises_the_sqlite3_error(aiosqlite_engine, category, cls, code, at):
    """aiosqlite: .orig is the sqlite3 class with its result code, as aiosqlite re-raises it."""
    with inject_fault(aiosqlite_engine, category, at=at) as handle:
        error = await fail_once(aiosqlite_engine, at)

    assert (cls, code) == (type(error.orig), error.orig.sqlite_errorcode)
    assert 1 == handle.fired
    assert category == category_of(error)
    assert 42 == await answer(aiosqlite_engine)


# -- behaviour ------------------------------------------------------------------------------------


async def test_times_faults_then_the_real_server_answers(engine):
    """The first `times` statements fail; the next one runs on the real server."""
    with inject_fault(engine, C.LOCK_TIMEOUT, times=2) as handle:
        for _ in range(2):
            with pytest.raises(sa.exc.DBAPIError):
                await answer(engine)
        assert 42 == await answer(engine)

    assert (2, 0) == (handle.fired, handle.remaining)


async def test_a_commit_fault_commits_nothing(engine, table_name):
    """The row inserted before the failed COMMIT is not there; the next commit works."""
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"CREATE TABLE {table_name} (id INTEGER PRIMARY KEY)"))
    try:
        with inject_fault(engine, C.LOCK_TIMEOUT, at="commit") as handle:
            async with engine.connect() as conn:
                await conn.execute(sa.text(f"INSERT INTO {table_name} VALUES (1)"))
                with pytest.raises(sa.exc.DBAPIError):
                    await conn.commit()
            async with engine.begin() as conn:
                await conn.execute(sa.text(f"INSERT INTO {table_name} VALUES (2)"))
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text(f"SELECT id FROM {table_name}"))).scalars().all()

        assert ([2], 1) == (rows, handle.fired)
    finally:
        async with engine.begin() as conn:
            await conn.execute(sa.text(f"DROP TABLE {table_name}"))


async def test_an_async_sessionmaker_reaches_its_engine(engine):
    """A fault on an async_sessionmaker fails the statements of its sessions."""
    factory = async_sessionmaker(engine)

    with inject_fault(factory, C.DATA) as handle:
        async with factory() as session:
            with pytest.raises(sa.exc.DBAPIError):
                await session.execute(sa.text("SELECT 1"))

    assert 1 == handle.fired


async def test_concurrent_tasks_take_exactly_times_faults(asyncpg_engine):
    """Tasks on their own connections never take more than `times` faults between them."""
    times, tasks, per_task = 12, 4, 8

    async def work() -> int:
        failed = 0
        async with asyncpg_engine.connect() as conn:
            for _ in range(per_task):
                try:
                    await conn.execute(sa.text("SELECT 1"))
                except sa.exc.DBAPIError:
                    failed += 1
                    await conn.rollback()
        return failed

    with inject_fault(asyncpg_engine, C.SERIALIZATION, times=times) as handle:
        failures = await asyncio.wait_for(asyncio.gather(*(work() for _ in range(tasks))), 60)

    assert (times, times) == (sum(failures), handle.fired)


@AT
async def test_a_connection_fault_invalidates_and_the_pool_reconnects(server_engine, at):
    """SQLAlchemy sees a disconnect: the connection is invalidated, the next checkout reconnects."""
    engine = server_engine
    async with engine.connect() as conn:
        with inject_fault(engine, C.CONNECTION, at=at):
            with pytest.raises(sa.exc.DBAPIError) as info:
                await conn.execute(sa.text("SELECT 1"))
                await conn.commit()
        assert (True, True) == (info.value.connection_invalidated, conn.invalidated)

    assert 42 == await answer(engine)


async def test_asyncpg_backend_terminated_mid_query_looks_like_the_injected_one(asyncpg_engine):
    """pg_terminate_backend during a query and an injected CONNECTION look the same to the caller."""
    async with asyncpg_engine.connect() as victim, asyncpg_engine.connect() as killer:
        pid = (await victim.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
        query = asyncio.create_task(victim.execute(sa.text("SELECT pg_sleep(10)")))
        for _ in range(500):  # wait (at most ~5 s) until the sleep runs on the server
            active = await killer.execute(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid AND state = 'active'"),
                {"pid": pid},
            )
            if active.scalar_one():
                break
            await asyncio.sleep(0.01)
        await killer.execute(sa.text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid})
        with pytest.raises(sa.exc.DBAPIError) as real:
            await asyncio.wait_for(query, 10)
    with inject_fault(asyncpg_engine, C.CONNECTION):
        injected = await fail_once(asyncpg_engine, "statement")

    def view(error):
        return [
            type(error),
            type(error.orig),
            type(error.orig.__cause__),
            error.orig.sqlstate,
            str(error.orig),
            error.connection_invalidated,
            category_of(error),
        ]

    assert view(real.value) == view(injected)


# -- with transactional() -------------------------------------------------------------------------


async def test_transactional_retries_injected_faults_without_sleeping(asyncpg_engine):
    """Two injected serialization failures: attempt 3 commits, set_testing() skipped the waits."""
    policy = txpolicy.RetryPolicy(attempts=5, wait_initial=5, wait_max=5, jitter="none")
    calls = []

    @txpolicy.transactional(asyncpg_engine, policy=policy)
    async def work(conn):
        calls.append(1)
        return (await conn.execute(sa.text("SELECT 40 + 2"))).scalar_one()

    started = time.monotonic()
    with set_testing(), inject_fault(asyncpg_engine, C.SERIALIZATION, times=2) as handle:
        result = await work()

    assert (42, 3, 2) == (result, len(calls), handle.fired)
    assert time.monotonic() - started < 4
