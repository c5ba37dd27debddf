"""
Provoke real database errors and return them exactly as they were raised.

Each provoker makes a real server fail in one well-known way (a deadlock between two
connections, a role over its connection limit, a write in a read-only transaction...) and
returns the exception object, untouched. A provoker is written once, as a *scenario*: a
generator of small driver-neutral steps (:class:`Run`, :class:`Start`, :class:`Wait`,
:class:`Poll`...). Two thin shells run scenarios, one with threads and one with asyncio tasks,
so the same scenario runs on every driver and under SQLAlchemy. The target picks the stack:

- ``"postgresql://..."`` or ``"postgresql+psycopg://..."``: psycopg 3
  (``psycopg.AsyncConnection`` under :meth:`Provoker.aio`);
- ``"postgresql+asyncpg://..."`` (``aio`` only): asyncpg;
- ``"mysql+pymysql://..."`` (sync only): PyMySQL;
- ``"sqlite:///path"``: sqlite3 (aiosqlite under ``aio``); ``"sqlite+aiosqlite:///path"``:
  aiosqlite;
- a ``sqlalchemy.Engine`` or ``AsyncEngine``: SQLAlchemy, wrapping what its driver raised.

:class:`Stack` and :data:`STACKS` name the twelve stacks of CONTRACT §2 (``"psycopg"``,
``"sa-asyncpg"``, ``"sqlite3"``...) and run a provoker on any of them from a plain server URL::

    STACKS["sa-asyncpg"].provoke(provoke_pg_deadlock, "postgresql://postgres@127.0.0.1/test")

For example::

    provoke_pg_deadlock("postgresql://postgres@127.0.0.1/test")  # psycopg.errors.DeadlockDetected
    provoke_pg_deadlock(engine)  # sqlalchemy.exc.OperationalError, .orig is the psycopg error
    await provoke_pg_deadlock.aio("postgresql+asyncpg://postgres@127.0.0.1/test")
    await provoke_pg_deadlock.aio(async_engine)
    provoke_pg_lock_not_available(engine, nowait=False)  # options are keyword arguments

:data:`PROVOKERS` lists them all by name. Every scenario keeps these rules:

- Tables, roles and users get unique names and are dropped afterwards (:class:`Cleanup`, run on
  a fresh connection once every connection of the scenario is closed, even on failure).
- Races are bounded: server-side timeouts (``lock_timeout``, ``statement_timeout``,
  ``innodb_lock_wait_timeout``, ``deadlock_timeout``), polling of the server's own view
  (``pg_locks``, ``pg_stat_activity``, ``information_schema.processlist``) with a deadline, and
  background statements joined with a timeout. No bare sleeps.
- Every connection opened is closed; SQLAlchemy connections are invalidated rather than
  returned, so session settings (``statement_timeout``, ``SET ROLE``...) never reach the pool.
- No server-global setting is changed.
- Transactions are explicit SQL (``BEGIN``/``START TRANSACTION``, ``COMMIT``) on connections in
  autocommit mode, so every stack sends the same statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Generator
from typing import Any, Protocol, TypeAlias

import aiosqlite
import asyncpg
import psycopg
import pymysql
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

__all__ = [
    "PROVOKERS",
    "STACKS",
    "Cleanup",
    "CloseDriver",
    "Connect",
    "NotProvoked",
    "Poll",
    "Provoker",
    "Run",
    "Settle",
    "Stack",
    "Start",
    "Wait",
    "aprovoke",
    "provoke",
]

ADMIN = "admin"
"""The connection scenarios use for setup, polling and killing other sessions."""

JOIN_TIMEOUT = 30.0
"""Seconds a background statement may run; every one is also bounded server-side."""

POLL_TIMEOUT = 10.0
POLL_INTERVAL = 0.01


class NotProvoked(AssertionError):
    """The scenario ran to its end without raising the error it exists to provoke."""


# -- steps ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Connect:
    """
    Open connection *conn* with non-default options (other steps connect lazily).

    ``capture=True`` returns a connection error instead of raising it.
    """

    conn: str
    user: str | None = None
    password: str | None = None
    sqlite_timeout: float | None = None
    sqlite_read_only: bool = False
    capture: bool = False


@dataclasses.dataclass(frozen=True)
class Run:
    """Run *sql* on *conn*; the reply is its rows, or the exception when ``capture=True``."""

    conn: str
    sql: str
    capture: bool = False


@dataclasses.dataclass(frozen=True)
class Start:
    """Start *sql* on *conn* in the background (a thread or a task); collect it with Wait."""

    conn: str
    sql: str


@dataclasses.dataclass(frozen=True)
class Wait:
    """Join the background statement of *conn*, at most JOIN_TIMEOUT seconds."""

    conn: str
    capture: bool = False


@dataclasses.dataclass(frozen=True)
class Poll:
    """Repeat *sql* on *conn* until its first value is true; TimeoutError after *timeout*."""

    conn: str
    sql: str
    timeout: float = POLL_TIMEOUT
    interval: float = POLL_INTERVAL


@dataclasses.dataclass(frozen=True)
class Settle:
    """
    Wait (at most *timeout*) until the driver of *conn* has itself seen the server close it.

    asyncpg reads the socket in the background: a FATAL error that arrives while the
    connection is idle is processed at some later turn of the event loop, and a statement sent
    before that meets a half-closed protocol (``InternalClientError: cannot switch to state``).
    The other drivers only read when asked, so for them this step does nothing.
    """

    conn: str
    timeout: float = POLL_TIMEOUT


@dataclasses.dataclass(frozen=True)
class CloseDriver:
    """Close the driver connection under *conn* (under SQLAlchemy's back, when wrapped)."""

    conn: str


@dataclasses.dataclass(frozen=True)
class Cleanup:
    """Run *sql* at the end on a fresh connection, after all others closed (last first)."""

    sql: str


Step: TypeAlias = "Connect | Run | Start | Wait | Poll | Settle | CloseDriver | Cleanup"
Scenario: TypeAlias = Generator[Any, Any, Any]
Rows: TypeAlias = list[tuple[Any, ...]]
SyncTarget: TypeAlias = "str | URL | sa.Engine"
AsyncTarget: TypeAlias = "str | URL | AsyncEngine"


# -- drivers: how each stack connects, runs and closes ----------------------------------------


class _SyncDriver(Protocol):
    backend: str

    def connect(self, step: Connect) -> Any: ...
    def run(self, conn: Any, sql: str) -> Rows: ...
    def close_driver(self, conn: Any) -> None: ...
    def discard(self, conn: Any) -> None: ...
    def close(self) -> None: ...


class _AsyncDriver(Protocol):
    backend: str

    async def connect(self, step: Connect) -> Any: ...
    async def run(self, conn: Any, sql: str) -> Rows: ...
    async def close_driver(self, conn: Any) -> None: ...
    async def discard(self, conn: Any) -> None: ...
    async def close(self) -> None: ...
    async def seen_closed(self, conn: Any) -> bool: ...


def _server_kwargs(url: URL, step: Connect) -> dict[str, Any]:
    """Host, port, user and password of *url*, with the user *step* asks for."""
    user = step.user if step.user is not None else url.username
    password = step.password if step.user is not None else url.password
    return {"host": url.host or "127.0.0.1", "port": url.port, "user": user, "password": password}


def _libpq_kwargs(url: URL, step: Connect) -> dict[str, Any]:
    kwargs = _server_kwargs(url, step)
    kwargs["port"] = kwargs["port"] or 5432
    return {"dbname": url.database, "autocommit": True, **kwargs}


def _sqlite_path(url: URL) -> str:
    """The database file of *url*; scenarios need a file that several connections share."""
    if url.database in (None, "", ":memory:"):
        raise ValueError(f"SQLite provokers need a database file, not {url!s}")
    return url.database


def _sqlite_connect_args(url: URL, step: Connect) -> tuple[str, dict[str, Any]]:
    """What sqlite3.connect / aiosqlite.connect take for *step*."""
    path = _sqlite_path(url)
    kwargs: dict[str, Any] = {"isolation_level": None, "check_same_thread": False}
    if step.sqlite_timeout is not None:
        kwargs["timeout"] = step.sqlite_timeout
    if step.sqlite_read_only:
        return f"file:{path}?mode=ro", {**kwargs, "uri": True}
    return path, kwargs


class _Psycopg:
    backend = "postgresql"

    def __init__(self, url: URL) -> None:
        self.url = url

    def connect(self, step: Connect) -> Any:

        return psycopg.connect(**_libpq_kwargs(self.url, step))

    def run(self, conn: Any, sql: str) -> Rows:
        cursor = conn.execute(sql)
        return [tuple(row) for row in cursor.fetchall()] if cursor.description else []

    def close_driver(self, conn: Any) -> None:
        conn.close()

    def discard(self, conn: Any) -> None:
        conn.close()

    def close(self) -> None:
        pass


class _PyMySQL:
    backend = "mysql"

    def __init__(self, url: URL) -> None:
        self.url = url

    def connect(self, step: Connect) -> Any:

        kwargs = _server_kwargs(self.url, step)
        kwargs["port"] = kwargs["port"] or 3306
        kwargs["password"] = kwargs["password"] or ""
        return pymysql.connect(database=self.url.database, autocommit=True, **kwargs)

    def run(self, conn: Any, sql: str) -> Rows:
        with conn.cursor() as cursor:
            cursor.execute(sql)
            return [tuple(row) for row in cursor.fetchall()]

    def close_driver(self, conn: Any) -> None:
        conn.close()

    def discard(self, conn: Any) -> None:
        # PyMySQL's close() raises "Already closed" on a connection it dropped itself.
        if conn.open:
            conn.close()

    def close(self) -> None:
        pass


class _SQLite:
    backend = "sqlite"

    def __init__(self, url: URL) -> None:
        self.url = url
        _sqlite_path(url)

    def connect(self, step: Connect) -> Any:
        database, kwargs = _sqlite_connect_args(self.url, step)
        return sqlite3.connect(database, **kwargs)

    def run(self, conn: Any, sql: str) -> Rows:
        return [tuple(row) for row in conn.execute(sql).fetchall()]

    def close_driver(self, conn: Any) -> None:
        conn.close()

    def discard(self, conn: Any) -> None:
        conn.close()

    def close(self) -> None:
        pass


def _side_url(url: URL, step: Connect) -> tuple[URL, dict[str, Any]]:
    """The URL and connect_args of an engine that opens connections the way *step* asks."""
    connect_args: dict[str, Any] = {}
    if step.user is not None:
        url = url.set(username=step.user, password=step.password)
    if step.sqlite_timeout is not None:
        connect_args["timeout"] = step.sqlite_timeout
    if step.sqlite_read_only:
        url = url.set(database=f"file:{_sqlite_path(url)}", query={"mode": "ro", "uri": "true"})
    return url, connect_args


def _escape_percent(dialect: sa.Dialect, sql: str) -> str:
    """SQLAlchemy always hands the driver parameters, so format-style drivers read ``%``."""
    return sql.replace("%", "%%") if dialect.paramstyle in ("format", "pyformat") else sql


def _is_plain(step: Connect) -> bool:
    return step.user is None and step.sqlite_timeout is None and not step.sqlite_read_only


class _SAEngine:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.backend = _backend(engine.dialect.name)
        self.side_engines: list[sa.Engine] = []

    def connect(self, step: Connect) -> Any:
        engine = self.engine
        if not _is_plain(step):
            url, connect_args = _side_url(self.engine.url, step)
            engine = sa.create_engine(url, poolclass=NullPool, connect_args=connect_args)
            self.side_engines.append(engine)
        conn = engine.connect()
        conn.execution_options(isolation_level="AUTOCOMMIT")
        return conn

    def run(self, conn: Any, sql: str) -> Rows:
        result = conn.exec_driver_sql(_escape_percent(conn.dialect, sql))
        return [tuple(row) for row in result] if result.returns_rows else []

    def close_driver(self, conn: Any) -> None:
        conn.connection.dbapi_connection.close()

    def discard(self, conn: Any) -> None:
        if not conn.closed:
            conn.invalidate()
            conn.close()

    def close(self) -> None:
        for engine in self.side_engines:
            engine.dispose()


class _AsyncPsycopg:
    backend = "postgresql"

    def __init__(self, url: URL) -> None:
        self.url = url

    async def connect(self, step: Connect) -> Any:

        return await psycopg.AsyncConnection.connect(**_libpq_kwargs(self.url, step))

    async def run(self, conn: Any, sql: str) -> Rows:
        cursor = await conn.execute(sql)
        return [tuple(row) for row in await cursor.fetchall()] if cursor.description else []

    async def close_driver(self, conn: Any) -> None:
        await conn.close()

    async def discard(self, conn: Any) -> None:
        await conn.close()

    async def close(self) -> None:
        pass

    async def seen_closed(self, conn: Any) -> bool:
        return True


class _Asyncpg:
    backend = "postgresql"

    def __init__(self, url: URL) -> None:
        self.url = url

    async def connect(self, step: Connect) -> Any:

        kwargs = _server_kwargs(self.url, step)
        kwargs["port"] = kwargs["port"] or 5432
        return await asyncpg.connect(database=self.url.database, **kwargs)

    async def run(self, conn: Any, sql: str) -> Rows:
        return [tuple(row) for row in await conn.fetch(sql)]

    async def close_driver(self, conn: Any) -> None:
        await conn.close(timeout=JOIN_TIMEOUT)

    async def discard(self, conn: Any) -> None:
        await conn.close(timeout=JOIN_TIMEOUT)

    async def close(self) -> None:
        pass

    async def seen_closed(self, conn: Any) -> bool:
        return bool(conn.is_closed())


class _Aiosqlite:
    backend = "sqlite"

    def __init__(self, url: URL) -> None:
        self.url = url
        _sqlite_path(url)

    async def connect(self, step: Connect) -> Any:

        database, kwargs = _sqlite_connect_args(self.url, step)
        return await aiosqlite.connect(database, **kwargs)

    async def run(self, conn: Any, sql: str) -> Rows:
        cursor = await conn.execute(sql)
        try:
            return [tuple(row) for row in await cursor.fetchall()]
        finally:
            await cursor.close()

    async def close_driver(self, conn: Any) -> None:
        await conn.close()

    async def discard(self, conn: Any) -> None:
        await conn.close()

    async def close(self) -> None:
        pass

    async def seen_closed(self, conn: Any) -> bool:
        return True


class _SAAsyncEngine:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.backend = _backend(engine.dialect.name)
        self.side_engines: list[AsyncEngine] = []

    async def connect(self, step: Connect) -> Any:
        engine = self.engine
        if not _is_plain(step):
            url, connect_args = _side_url(self.engine.url, step)
            engine = create_async_engine(url, poolclass=NullPool, connect_args=connect_args)
            self.side_engines.append(engine)
        conn = await engine.connect()
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        return conn

    async def run(self, conn: AsyncConnection, sql: str) -> Rows:
        result = await conn.exec_driver_sql(_escape_percent(conn.dialect, sql))
        return [tuple(row) for row in result.fetchall()] if result.returns_rows else []

    async def close_driver(self, conn: AsyncConnection) -> None:
        raw = await conn.get_raw_connection()
        await raw.driver_connection.close()  # type: ignore[union-attr]

    async def discard(self, conn: AsyncConnection) -> None:
        if not conn.closed:
            await conn.invalidate()
            await conn.close()

    async def close(self) -> None:
        for engine in self.side_engines:
            await engine.dispose()

    async def seen_closed(self, conn: AsyncConnection) -> bool:
        driver_connection = (await conn.get_raw_connection()).driver_connection
        is_closed = getattr(driver_connection, "is_closed", None)  # asyncpg's
        return True if is_closed is None else bool(is_closed())


def _backend(name: str) -> str:
    return "mysql" if name in ("mysql", "mariadb") else name


def _url(target: str | URL) -> URL:
    return make_url(target) if isinstance(target, str) else target


def _sync_driver(target: SyncTarget) -> _SyncDriver:
    """The driver for a sync *target*; TypeError/ValueError for anything else, before any I/O."""
    if isinstance(target, sa.Engine):
        return _SAEngine(target)
    if not isinstance(target, (str, URL)):
        raise TypeError(f"a provoker target is a URL or an Engine, not {target!r}")
    url = _url(target)
    drivers: dict[str, Callable[[URL], _SyncDriver]] = {
        "postgresql": _Psycopg,
        "postgresql+psycopg": _Psycopg,
        "mysql": _PyMySQL,
        "mysql+pymysql": _PyMySQL,
        "mariadb+pymysql": _PyMySQL,
        "sqlite": _SQLite,
        "sqlite+pysqlite": _SQLite,
    }
    if url.drivername not in drivers:
        raise ValueError(f"no sync driver for {url.drivername!r}; choose one of {sorted(drivers)}")
    return drivers[url.drivername](url)


def _async_driver(target: AsyncTarget) -> _AsyncDriver:
    """The driver for an async *target*; TypeError/ValueError for anything else, before any I/O."""
    if isinstance(target, AsyncEngine):
        return _SAAsyncEngine(target)
    if not isinstance(target, (str, URL)):
        raise TypeError(f"an async provoker target is a URL or an AsyncEngine, not {target!r}")
    url = _url(target)
    drivers: dict[str, Callable[[URL], _AsyncDriver]] = {
        "postgresql": _AsyncPsycopg,
        "postgresql+psycopg": _AsyncPsycopg,
        "postgresql+psycopg_async": _AsyncPsycopg,
        "postgresql+asyncpg": _Asyncpg,
        "sqlite": _Aiosqlite,
        "sqlite+aiosqlite": _Aiosqlite,
    }
    if url.drivername not in drivers:
        raise ValueError(f"no async driver for {url.drivername!r}; choose one of {sorted(drivers)}")
    return drivers[url.drivername](url)


# -- the two shells ---------------------------------------------------------------------------


def _provoked(outcome: object) -> BaseException:
    if not isinstance(outcome, BaseException):
        raise NotProvoked(f"the scenario ended without an error (it returned {outcome!r})")
    return outcome


class _SyncSession:
    """Runs the steps of one scenario with a sync driver; threads for background statements."""

    def __init__(self, driver: _SyncDriver, exits: contextlib.ExitStack) -> None:
        self.driver = driver
        self.exits = exits
        self.conns: dict[str, Any] = {}
        self.background: dict[str, tuple[threading.Thread, list[Any]]] = {}
        self.cleanups: list[str] = []
        exits.callback(driver.close)
        exits.callback(self._run_cleanups)

    def do(self, step: Step) -> Any:
        try:
            return self._do(step)
        except Exception as exc:
            if getattr(step, "capture", False):
                return exc
            raise

    def _do(self, step: Step) -> Any:
        match step:
            case Connect():
                self._connect(step)
                return None
            case Run(conn=name, sql=sql):
                return self.driver.run(self._conn(name), sql)
            case Start(conn=name, sql=sql):
                return self._start(name, sql)
            case Wait(conn=name):
                return self._wait(name)
            case Poll():
                return self._poll(step)
            case Settle():
                return None  # sync drivers read only when asked
            case CloseDriver(conn=name):
                return self.driver.close_driver(self._conn(name))
            case Cleanup(sql=sql):
                self.cleanups.append(sql)
                return None
        raise TypeError(f"not a scenario step: {step!r}")

    def _connect(self, step: Connect) -> Any:
        conn = self.driver.connect(step)
        self.conns[step.conn] = conn
        self.exits.callback(self.driver.discard, conn)
        return conn

    def _conn(self, name: str) -> Any:
        return self.conns[name] if name in self.conns else self._connect(Connect(name))

    def _start(self, name: str, sql: str) -> None:
        conn = self._conn(name)
        outcome: list[Any] = []

        def target() -> None:
            try:
                outcome.append(self.driver.run(conn, sql))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=target, name=f"provoke-{name}", daemon=True)
        thread.start()
        self.background[name] = (thread, outcome)
        self.exits.callback(thread.join, JOIN_TIMEOUT)

    def _wait(self, name: str) -> Any:
        thread, outcome = self.background.pop(name)
        thread.join(JOIN_TIMEOUT)
        if thread.is_alive():
            raise TimeoutError(f"the background statement on {name!r} ran past {JOIN_TIMEOUT} s")
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    def _poll(self, step: Poll) -> Rows:
        deadline = time.monotonic() + step.timeout
        while True:
            rows = self.driver.run(self._conn(step.conn), step.sql)
            if rows and rows[0][0]:
                return rows
            if time.monotonic() > deadline:
                raise TimeoutError(f"{step.sql!r} stayed false for {step.timeout} s")
            time.sleep(step.interval)

    def _run_cleanups(self) -> None:
        if not self.cleanups:
            return
        conn = self.driver.connect(Connect("cleanup"))
        with contextlib.ExitStack() as each:  # every statement runs; the first error is raised
            each.callback(self.driver.discard, conn)
            for sql in self.cleanups:
                each.callback(self.driver.run, conn, sql)


class _AsyncSession:
    """Runs the steps of one scenario with an async driver; tasks for background statements."""

    def __init__(self, driver: _AsyncDriver, exits: contextlib.AsyncExitStack) -> None:
        self.driver = driver
        self.exits = exits
        self.conns: dict[str, Any] = {}
        self.background: dict[str, asyncio.Task[Rows]] = {}
        self.cleanups: list[str] = []
        exits.push_async_callback(driver.close)
        exits.push_async_callback(self._run_cleanups)

    async def do(self, step: Step) -> Any:
        try:
            return await self._do(step)
        except Exception as exc:
            if getattr(step, "capture", False):
                return exc
            raise

    async def _do(self, step: Step) -> Any:
        match step:
            case Connect():
                await self._connect(step)
                return None
            case Run(conn=name, sql=sql):
                return await self.driver.run(await self._conn(name), sql)
            case Start(conn=name, sql=sql):
                return await self._start(name, sql)
            case Wait(conn=name):
                task = self.background.pop(name)
                return await asyncio.wait_for(asyncio.shield(task), JOIN_TIMEOUT)
            case Poll():
                return await self._poll(step)
            case Settle():
                return await self._settle(step)
            case CloseDriver(conn=name):
                return await self.driver.close_driver(await self._conn(name))
            case Cleanup(sql=sql):
                self.cleanups.append(sql)
                return None
        raise TypeError(f"not a scenario step: {step!r}")

    async def _connect(self, step: Connect) -> Any:
        conn = await self.driver.connect(step)
        self.conns[step.conn] = conn
        self.exits.push_async_callback(self.driver.discard, conn)
        return conn

    async def _conn(self, name: str) -> Any:
        return self.conns[name] if name in self.conns else await self._connect(Connect(name))

    async def _start(self, name: str, sql: str) -> None:
        task = asyncio.create_task(self.driver.run(await self._conn(name), sql))
        self.background[name] = task
        self.exits.push_async_callback(_settle, task)

    async def _poll(self, step: Poll) -> Rows:
        deadline = time.monotonic() + step.timeout
        while True:
            rows = await self.driver.run(await self._conn(step.conn), step.sql)
            if rows and rows[0][0]:
                return rows
            if time.monotonic() > deadline:
                raise TimeoutError(f"{step.sql!r} stayed false for {step.timeout} s")
            await asyncio.sleep(step.interval)

    async def _settle(self, step: Settle) -> None:
        conn = await self._conn(step.conn)
        deadline = time.monotonic() + step.timeout
        while not await self.driver.seen_closed(conn):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the driver did not see {step.conn!r} close in {step.timeout} s"
                )
            await asyncio.sleep(POLL_INTERVAL)

    async def _run_cleanups(self) -> None:
        if not self.cleanups:
            return
        conn = await self.driver.connect(Connect("cleanup"))
        async with contextlib.AsyncExitStack() as each:  # every statement runs
            each.push_async_callback(self.driver.discard, conn)
            for sql in self.cleanups:
                each.push_async_callback(self.driver.run, conn, sql)


async def _settle(task: asyncio.Task[Any]) -> None:
    """Let a background task finish (bounded) before its connection is closed; keep no error."""
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(task, JOIN_TIMEOUT)


def provoke(target: SyncTarget, scenario: Scenario) -> BaseException:
    """Run *scenario* on a sync *target* and return the error it provoked, as raised."""
    driver = _sync_driver(target)
    with contextlib.ExitStack() as exits:
        do = _SyncSession(driver, exits).do
        reply = None
        while True:
            try:
                step = scenario.send(reply)
            except StopIteration as stop:
                return _provoked(stop.value)
            reply = do(step)


async def aprovoke(target: AsyncTarget, scenario: Scenario) -> BaseException:
    """Run *scenario* on an async *target* and return the error it provoked, as raised."""
    driver = _async_driver(target)
    async with contextlib.AsyncExitStack() as exits:
        do = _AsyncSession(driver, exits).do
        reply = None
        while True:
            try:
                step = scenario.send(reply)
            except StopIteration as stop:
                return _provoked(stop.value)
            reply = await do(step)


class Provoker:
    """
    One way to make a real server fail; call it on a sync target, ``await .aio()`` on an async one.

    Args:
        backend: ``"postgresql"``, ``"mysql"`` or ``"sqlite"``; other targets are refused.
        scenario: A generator function of steps that returns the captured error.
    """

    def __init__(self, backend: str, scenario: Callable[..., Scenario]) -> None:
        self.backend = backend
        self.scenario = scenario
        self.name = scenario.__name__
        functools.update_wrapper(self, scenario)

    def __call__(self, target: SyncTarget, /, **options: Any) -> BaseException:
        driver = _sync_driver(target)
        self._check(driver.backend)
        return provoke(target, self.scenario(**options))

    async def aio(self, target: AsyncTarget, /, **options: Any) -> BaseException:
        """The same scenario through an async driver or an AsyncEngine."""
        self._check(_async_driver(target).backend)
        return await aprovoke(target, self.scenario(**options))

    def _check(self, backend: str) -> None:
        if backend != self.backend:
            raise ValueError(f"{self.name} needs a {self.backend} target, not {backend}")

    def __repr__(self) -> str:
        return f"<Provoker {self.name} ({self.backend})>"


PROVOKERS: dict[str, Provoker] = {}
"""Every provoker of this module by name, for benchmarks and the fault suite."""


def _provoker(backend: str) -> Callable[[Callable[..., Scenario]], Provoker]:
    def register(scenario: Callable[..., Scenario]) -> Provoker:
        provoker = Provoker(backend, scenario)
        PROVOKERS[provoker.name] = provoker
        return provoker

    return register


# -- stacks: one driver, raw or under SQLAlchemy, sync or async --------------------------------


@dataclasses.dataclass(frozen=True)
class Stack:
    """
    One way a program talks to a server: a driver, raw or under SQLAlchemy.

    :meth:`provoke` builds the target from any URL of the server (and disposes the engine it
    made), so a test or a benchmark can say "this provoker, on that stack".
    """

    name: str
    backend: str
    driver: str
    drivername: str
    sqlalchemy: bool
    asynchronous: bool

    def target_url(self, url: str | URL) -> URL:
        """*url* with this stack's driver."""
        return _url(url).set(drivername=self.drivername)

    def provoke(self, provoker: Provoker, url: str | URL, /, **options: Any) -> BaseException:
        """Run *provoker* on this stack (async stacks in their own event loop)."""
        if self.asynchronous:
            return asyncio.run(self.aprovoke(provoker, url, **options))
        target = self.target_url(url)
        if not self.sqlalchemy:
            return provoker(target, **options)
        engine = sa.create_engine(target)
        try:
            return provoker(engine, **options)
        finally:
            engine.dispose()

    async def aprovoke(
        self, provoker: Provoker, url: str | URL, /, **options: Any
    ) -> BaseException:
        """Run *provoker* on this (async) stack inside a running event loop."""
        if not self.asynchronous:
            raise TypeError(f"{self.name} is a sync stack; use provoke()")
        target = self.target_url(url)
        if not self.sqlalchemy:
            return await provoker.aio(target, **options)
        engine = create_async_engine(target)
        try:
            return await provoker.aio(engine, **options)
        finally:
            await engine.dispose()

    def raised_by_driver(self, error: BaseException) -> BaseException:
        """
        The exception the driver itself raised, behind SQLAlchemy's wrapper if any.

        That is ``error.orig``, or for an async adapter's emulated DB-API error (asyncpg under
        SQLAlchemy) the real driver exception it was raised from.
        """
        if not self.sqlalchemy:
            return error
        inner = getattr(error, "orig", None)
        if not isinstance(error, sa.exc.DBAPIError) or not isinstance(inner, BaseException):
            raise TypeError(f"{self.name} raises SQLAlchemy's DBAPIError, not {error!r}")
        if type(inner).__module__.startswith("sqlalchemy.") and inner.__cause__ is not None:
            return inner.__cause__
        return inner

    def __str__(self) -> str:
        return self.name


STACKS: dict[str, Stack] = {
    stack.name: stack
    for stack in (
        Stack("psycopg", "postgresql", "psycopg", "postgresql+psycopg", False, False),
        Stack("psycopg-async", "postgresql", "psycopg", "postgresql+psycopg", False, True),
        Stack("asyncpg", "postgresql", "asyncpg", "postgresql+asyncpg", False, True),
        Stack("sa-psycopg", "postgresql", "psycopg", "postgresql+psycopg", True, False),
        Stack("sa-psycopg-async", "postgresql", "psycopg", "postgresql+psycopg", True, True),
        Stack("sa-asyncpg", "postgresql", "asyncpg", "postgresql+asyncpg", True, True),
        Stack("pymysql", "mysql", "pymysql", "mysql+pymysql", False, False),
        Stack("sa-pymysql", "mysql", "pymysql", "mysql+pymysql", True, False),
        Stack("sqlite3", "sqlite", "sqlite3", "sqlite", False, False),
        Stack("aiosqlite", "sqlite", "aiosqlite", "sqlite+aiosqlite", False, True),
        Stack("sa-sqlite", "sqlite", "sqlite3", "sqlite", True, False),
        Stack("sa-aiosqlite", "sqlite", "aiosqlite", "sqlite+aiosqlite", True, True),
    )
}
"""Every stack the contract names (CONTRACT §2), by name."""


# -- scenario helpers -------------------------------------------------------------------------


def unique_name(prefix: str) -> str:
    """A name no other test or engineer uses at the same time."""
    return f"txp_{prefix}_{uuid.uuid4().hex[:12]}"


def _table(columns: str, rows: str | None = None, *, suffix: str = "") -> Scenario:
    """Create a uniquely named table (dropped at the end) and return its name."""
    name = unique_name("t")
    yield Cleanup(f"DROP TABLE IF EXISTS {name}")
    yield Run(ADMIN, f"CREATE TABLE {name} ({columns}){suffix}")
    if rows is not None:
        yield Run(ADMIN, f"INSERT INTO {name} VALUES {rows}")
    return name


def _one_error(*outcomes: object) -> BaseException:
    """The single error among the outcomes of racing statements."""
    errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    if len(errors) != 1:
        raise NotProvoked(f"expected exactly one error among the racers, got {outcomes!r}")
    return errors[0]


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, not {value!r}")
    return value


def _scalar(rows: Rows) -> Any:
    return rows[0][0]


# -- PostgreSQL -------------------------------------------------------------------------------

_PG_ROWS = "id integer PRIMARY KEY, v integer NOT NULL"


def _pg_pid(conn: str) -> Scenario:
    return _scalar((yield Run(conn, "SELECT pg_backend_pid()")))


@_provoker("postgresql")
def provoke_pg_deadlock() -> Scenario:
    """40P01: two transactions lock rows 1 and 2, then each other's; the first waiter loses."""
    table = yield from _table(_PG_ROWS, "(1, 0), (2, 0)")
    for conn in ("a", "b"):
        yield Run(conn, "SET lock_timeout = '20s'")  # a safety net; deadlock_timeout is 1 s
        yield Run(conn, "BEGIN")
    pid_a = yield from _pg_pid("a")
    yield Run("a", f"UPDATE {table} SET v = v + 1 WHERE id = 1")
    yield Run("b", f"UPDATE {table} SET v = v + 1 WHERE id = 2")
    yield Start("a", f"UPDATE {table} SET v = v + 1 WHERE id = 2")
    yield Poll(ADMIN, f"SELECT count(*) > 0 FROM pg_locks WHERE pid = {pid_a} AND NOT granted")
    b = yield Run("b", f"UPDATE {table} SET v = v + 1 WHERE id = 1", capture=True)
    a = yield Wait("a", capture=True)
    yield Run("a", "ROLLBACK")
    yield Run("b", "ROLLBACK")
    return _one_error(a, b)


@_provoker("postgresql")
def provoke_pg_serialization(*, at_commit: bool = False) -> Scenario:
    """
    40001, from a real concurrent transaction.

    By default a REPEATABLE READ transaction updates a row another one changed since its
    snapshot ("could not serialize access due to concurrent update"). With ``at_commit=True``,
    two SERIALIZABLE transactions each read what the other writes (write skew) and the second
    COMMIT fails ("... during commit attempt"): a definite rollback raised by COMMIT.
    """
    table = yield from _table(_PG_ROWS, "(1, 0)")
    if not at_commit:
        yield Run("a", "BEGIN ISOLATION LEVEL REPEATABLE READ")
        yield Run("a", f"SELECT v FROM {table} WHERE id = 1")
        yield Run("b", f"UPDATE {table} SET v = v + 1 WHERE id = 1")
        error = yield Run("a", f"UPDATE {table} SET v = v + 1 WHERE id = 1", capture=True)
        yield Run("a", "ROLLBACK")
        return error
    for conn, new_id in (("a", 10), ("b", 11)):
        yield Run(conn, "BEGIN ISOLATION LEVEL SERIALIZABLE")
        yield Run(conn, f"SELECT sum(v) FROM {table}")
        yield Run(conn, f"INSERT INTO {table} VALUES ({new_id}, 1)")
    yield Run("a", "COMMIT")
    error = yield Run("b", "COMMIT", capture=True)
    return error


@_provoker("postgresql")
def provoke_pg_lock_not_available(*, nowait: bool = True) -> Scenario:
    """55P03: a row locked by another transaction, with NOWAIT or past a 100 ms lock_timeout."""
    table = yield from _table(_PG_ROWS, "(1, 0)")
    yield Run("a", "BEGIN")
    yield Run("a", f"SELECT v FROM {table} WHERE id = 1 FOR UPDATE")
    if nowait:
        sql = f"SELECT v FROM {table} WHERE id = 1 FOR UPDATE NOWAIT"
    else:
        yield Run("b", "SET lock_timeout = '100ms'")
        sql = f"SELECT v FROM {table} WHERE id = 1 FOR UPDATE"
    error = yield Run("b", sql, capture=True)
    yield Run("a", "ROLLBACK")
    return error


@_provoker("postgresql")
def provoke_pg_statement_timeout() -> Scenario:
    """57014 "canceling statement due to statement timeout": pg_sleep past 100 ms."""
    yield Run("a", "SET statement_timeout = '100ms'")
    return (yield Run("a", "SELECT pg_sleep(5)", capture=True))


def _pg_sleep_in_background(conn: str, pid: int) -> Scenario:
    """Start a 10 s pg_sleep on *conn* (bounded by statement_timeout) and wait until it runs."""
    yield Run(conn, "SET statement_timeout = '10s'")
    yield Start(conn, "SELECT pg_sleep(10)")
    yield Poll(
        ADMIN,
        f"SELECT count(*) > 0 FROM pg_stat_activity WHERE pid = {pid} AND wait_event = 'PgSleep'",
    )


@_provoker("postgresql")
def provoke_pg_cancel() -> Scenario:
    """57014 "canceling statement due to user request": pg_cancel_backend on a running query."""
    pid = yield from _pg_pid("a")
    yield from _pg_sleep_in_background("a", pid)
    yield Run(ADMIN, f"SELECT pg_cancel_backend({pid})")
    return (yield Wait("a", capture=True))


@_provoker("postgresql")
def provoke_pg_terminated(*, during: str = "idle") -> Scenario:
    """
    57P01 "terminating connection due to administrator command", by pg_terminate_backend.

    *during* is where the victim meets it: ``"idle"`` (its next statement), ``"statement"``
    (a running pg_sleep), ``"commit"`` (its COMMIT, after an INSERT), or ``"reuse"`` (the
    statement after that: the driver's own "connection is closed"; raw drivers only, SQLAlchemy
    refuses to reuse an invalidated connection before any driver is involved).
    """
    _choice("during", during, ("idle", "statement", "commit", "reuse"))
    table = (yield from _table(_PG_ROWS)) if during == "commit" else None
    pid = yield from _pg_pid("a")
    if during == "statement":
        yield from _pg_sleep_in_background("a", pid)
    if during == "commit":
        yield Run("a", "BEGIN")
        yield Run("a", f"INSERT INTO {table} VALUES (1, 0)")
    # The timeout makes pg_terminate_backend wait (5 s at most) until the backend is gone.
    yield Run(ADMIN, f"SELECT pg_terminate_backend({pid}, 5000)")
    if during == "statement":
        return (yield Wait("a", capture=True))
    yield Settle("a")
    if during == "reuse":
        yield Run("a", "SELECT 1", capture=True)
    return (yield Run("a", "COMMIT" if during == "commit" else "SELECT 1", capture=True))


@_provoker("postgresql")
def provoke_pg_too_many_connections() -> Scenario:
    """53300 at connect time: a second session for a role with CONNECTION LIMIT 1."""
    role = unique_name("r")
    yield Cleanup(f"DROP ROLE IF EXISTS {role}")
    yield Run(ADMIN, f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 1")
    yield Connect("a", user=role)
    yield Run("a", "SELECT 1")
    return (yield Connect("b", user=role, capture=True))


@_provoker("postgresql")
def provoke_pg_read_only() -> Scenario:
    """25006: an INSERT after SET TRANSACTION READ ONLY."""
    table = yield from _table(_PG_ROWS)
    yield Run("a", "BEGIN")
    yield Run("a", "SET TRANSACTION READ ONLY")
    error = yield Run("a", f"INSERT INTO {table} VALUES (1, 0)", capture=True)
    yield Run("a", "ROLLBACK")
    return error


@_provoker("postgresql")
def provoke_pg_unique() -> Scenario:
    """23505: the same primary key twice."""
    table = yield from _table(_PG_ROWS, "(1, 0)")
    return (yield Run("a", f"INSERT INTO {table} VALUES (1, 0)", capture=True))


@_provoker("postgresql")
def provoke_pg_foreign_key() -> Scenario:
    """23503: a child row whose parent does not exist."""
    parent = yield from _table("id integer PRIMARY KEY")
    child = yield from _table(f"id integer PRIMARY KEY, parent integer REFERENCES {parent}")
    return (yield Run("a", f"INSERT INTO {child} VALUES (1, 42)", capture=True))


@_provoker("postgresql")
def provoke_pg_not_null() -> Scenario:
    """23502: NULL into a NOT NULL column."""
    table = yield from _table(_PG_ROWS)
    return (yield Run("a", f"INSERT INTO {table} VALUES (1, NULL)", capture=True))


@_provoker("postgresql")
def provoke_pg_check() -> Scenario:
    """23514: a value its CHECK constraint rejects."""
    table = yield from _table("id integer PRIMARY KEY, v integer CHECK (v >= 0)")
    return (yield Run("a", f"INSERT INTO {table} VALUES (1, -1)", capture=True))


@_provoker("postgresql")
def provoke_pg_data(*, kind: str = "invalid_text") -> Scenario:
    """Class 22: ``"invalid_text"`` 22P02, ``"division_by_zero"`` 22012, ``"too_long"`` 22001."""
    _choice("kind", kind, ("invalid_text", "division_by_zero", "too_long"))
    if kind == "invalid_text":
        return (yield Run("a", "SELECT 'forty-two'::integer", capture=True))
    if kind == "division_by_zero":
        return (yield Run("a", "SELECT 1 / 0", capture=True))
    table = yield from _table("s varchar(3)")
    return (yield Run("a", f"INSERT INTO {table} VALUES ('abcdef')", capture=True))


@_provoker("postgresql")
def provoke_pg_permission() -> Scenario:
    """42501: SELECT on a table after SET ROLE to a role without privileges."""
    role = unique_name("r")
    yield Cleanup(f"DROP ROLE IF EXISTS {role}")
    yield Run(ADMIN, f"CREATE ROLE {role} NOLOGIN")
    table = yield from _table(_PG_ROWS)
    yield Run("a", f"SET ROLE {role}")
    return (yield Run("a", f"SELECT * FROM {table}", capture=True))


@_provoker("postgresql")
def provoke_pg_schema(*, kind: str = "undefined_table") -> Scenario:
    """``"undefined_table"`` 42P01, ``"undefined_column"`` 42703, ``"syntax"`` 42601."""
    _choice("kind", kind, ("undefined_table", "undefined_column", "syntax"))
    if kind == "undefined_table":
        return (yield Run("a", f"SELECT * FROM {unique_name('missing')}", capture=True))
    if kind == "syntax":
        return (yield Run("a", "SELEC 1", capture=True))
    table = yield from _table(_PG_ROWS)
    return (yield Run("a", f"SELECT no_such_column FROM {table}", capture=True))


@_provoker("postgresql")
def provoke_pg_in_failed_transaction() -> Scenario:
    """25P02: a statement after an error that the transaction swallowed."""
    yield Run("a", "BEGIN")
    yield Run("a", "SELECT 1 / 0", capture=True)
    error = yield Run("a", "SELECT 1", capture=True)
    yield Run("a", "ROLLBACK")
    return error


@_provoker("postgresql")
def provoke_pg_idle_in_transaction_timeout(*, at_commit: bool = False) -> Scenario:
    """
    25P03: the session idled in a transaction past 100 ms and the server ended it.

    The next statement (``COMMIT`` with ``at_commit=True``) meets the FATAL error. The wait is
    bounded by polling ``pg_stat_activity`` until the backend is gone.
    """
    pid = yield from _pg_pid("a")
    yield Run("a", "SET idle_in_transaction_session_timeout = '100ms'")
    yield Run("a", "BEGIN")
    yield Run("a", "SELECT 1")
    yield Poll(ADMIN, f"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = {pid}")
    yield Settle("a")
    return (yield Run("a", "COMMIT" if at_commit else "SELECT 1", capture=True))


# -- MariaDB / MySQL --------------------------------------------------------------------------

_MY_ROWS = "id integer PRIMARY KEY, v integer NOT NULL"
_INNODB = " ENGINE=InnoDB"


def _my_table(columns: str = _MY_ROWS, rows: str | None = None) -> Scenario:
    return (yield from _table(columns, rows, suffix=_INNODB))


def _my_id(conn: str) -> Scenario:
    return _scalar((yield Run(conn, "SELECT CONNECTION_ID()")))


def _my_user(*grants: str) -> Scenario:
    """Create a unique user (dropped at the end) with *grants*; return (name, password)."""
    user = unique_name("u")
    password = uuid.uuid4().hex
    yield Cleanup(f"DROP USER IF EXISTS '{user}'@'%'")
    yield Run(ADMIN, f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
    for grant in grants:
        yield Run(ADMIN, f"GRANT {grant} TO '{user}'@'%'")
    return user, password


@_provoker("mysql")
def provoke_mysql_deadlock() -> Scenario:
    """1213: two transactions lock rows 1 and 2, then each other's; InnoDB picks a victim."""
    table = yield from _my_table(rows="(1, 0), (2, 0)")
    for conn in ("a", "b"):
        yield Run(conn, "SET SESSION innodb_lock_wait_timeout = 20")  # a safety net
        yield Run(conn, "START TRANSACTION")
    id_a = yield from _my_id("a")
    yield Run("a", f"UPDATE {table} SET v = v + 1 WHERE id = 1")
    yield Run("b", f"UPDATE {table} SET v = v + 1 WHERE id = 2")
    yield Start("a", f"UPDATE {table} SET v = v + 1 WHERE id = 2")
    # InnoDB refreshes its information_schema cache only when it was not read for 100 ms.
    yield Poll(
        ADMIN,
        "SELECT count(*) > 0 FROM information_schema.innodb_trx"
        f" WHERE trx_mysql_thread_id = {id_a} AND trx_state = 'LOCK WAIT'",
        interval=0.15,
    )
    b = yield Run("b", f"UPDATE {table} SET v = v + 1 WHERE id = 1", capture=True)
    a = yield Wait("a", capture=True)
    yield Run("a", "ROLLBACK")
    yield Run("b", "ROLLBACK")
    return _one_error(a, b)


@_provoker("mysql")
def provoke_mysql_lock_wait_timeout(*, nowait: bool = False) -> Scenario:
    """
    1205 on a row another transaction locked.

    By default after ``innodb_lock_wait_timeout = 1`` (session); with ``nowait=True`` from
    ``SELECT ... FOR UPDATE NOWAIT``, which MariaDB 10.11 also reports as 1205 (MySQL 8 says 3572).
    """
    table = yield from _my_table(rows="(1, 0)")
    yield Run("a", "START TRANSACTION")
    yield Run("a", f"SELECT v FROM {table} WHERE id = 1 FOR UPDATE")
    if nowait:
        sql = f"SELECT v FROM {table} WHERE id = 1 FOR UPDATE NOWAIT"
    else:
        yield Run("b", "SET SESSION innodb_lock_wait_timeout = 1")
        sql = f"UPDATE {table} SET v = v + 1 WHERE id = 1"
    error = yield Run("b", sql, capture=True)
    yield Run("a", "ROLLBACK")
    return error


@_provoker("mysql")
def provoke_mysql_statement_timeout() -> Scenario:
    """1969 (MariaDB): SLEEP past ``max_statement_time``, set for this statement only."""
    return (
        yield Run("a", "SET STATEMENT max_statement_time = 0.1 FOR SELECT SLEEP(5)", capture=True)
    )


def _my_sleep_in_background(conn: str, conn_id: int) -> Scenario:
    """Start a 10 s SLEEP on *conn* and wait until the server runs it."""
    yield Start(conn, "SELECT SLEEP(10)")
    yield Poll(
        ADMIN,
        "SELECT count(*) > 0 FROM information_schema.processlist"
        f" WHERE id = {conn_id} AND state = 'User sleep'",
    )


@_provoker("mysql")
def provoke_mysql_query_killed() -> Scenario:
    """1317 "Query execution was interrupted": KILL QUERY on a running SLEEP."""
    conn_id = yield from _my_id("a")
    yield from _my_sleep_in_background("a", conn_id)
    yield Run(ADMIN, f"KILL QUERY {conn_id}")
    return (yield Wait("a", capture=True))


@_provoker("mysql")
def provoke_mysql_killed(*, during: str = "idle") -> Scenario:
    """
    A connection ended by ``KILL CONNECTION``.

    *during*: ``"idle"`` (its next statement: client error 2013), ``"statement"`` (a running
    SLEEP: 2013), ``"commit"`` (its COMMIT after an INSERT: 2013), or ``"self"`` (a session that
    kills itself gets MariaDB's error packet 1927 "Connection was killed").
    """
    _choice("during", during, ("idle", "statement", "commit", "self"))
    if during == "self":
        return (yield Run("a", "KILL CONNECTION CONNECTION_ID()", capture=True))
    table = (yield from _my_table()) if during == "commit" else None
    conn_id = yield from _my_id("a")
    if during == "statement":
        yield from _my_sleep_in_background("a", conn_id)
    if during == "commit":
        yield Run("a", "START TRANSACTION")
        yield Run("a", f"INSERT INTO {table} VALUES (1, 0)")
    yield Run(ADMIN, f"KILL CONNECTION {conn_id}")
    if during == "statement":
        return (yield Wait("a", capture=True))
    yield Poll(
        ADMIN,
        f"SELECT count(*) = 0 FROM information_schema.processlist WHERE id = {conn_id}",
    )
    return (yield Run("a", "COMMIT" if during == "commit" else "SELECT 1", capture=True))


@_provoker("mysql")
def provoke_mysql_too_many_connections() -> Scenario:
    """1226 at connect time: a second session for a user WITH MAX_USER_CONNECTIONS 1."""
    table = yield from _my_table()
    user, password = yield from _my_user(f"SELECT ON {table}")
    yield Run(ADMIN, f"ALTER USER '{user}'@'%' WITH MAX_USER_CONNECTIONS 1")
    yield Connect("a", user=user, password=password)
    yield Run("a", "SELECT 1")
    return (yield Connect("b", user=user, password=password, capture=True))


@_provoker("mysql")
def provoke_mysql_read_only() -> Scenario:
    """1792: an INSERT in ``START TRANSACTION READ ONLY``."""
    table = yield from _my_table()
    yield Run("a", "START TRANSACTION READ ONLY")
    error = yield Run("a", f"INSERT INTO {table} VALUES (1, 0)", capture=True)
    yield Run("a", "ROLLBACK")
    return error


@_provoker("mysql")
def provoke_mysql_unique() -> Scenario:
    """1062: the same primary key twice."""
    table = yield from _my_table(rows="(1, 0)")
    return (yield Run("a", f"INSERT INTO {table} VALUES (1, 0)", capture=True))


@_provoker("mysql")
def provoke_mysql_foreign_key() -> Scenario:
    """1452: a child row whose parent does not exist."""
    parent = yield from _my_table("id integer PRIMARY KEY")
    child = yield from _my_table(
        f"id integer PRIMARY KEY, parent integer, FOREIGN KEY (parent) REFERENCES {parent} (id)"
    )
    return (yield Run("a", f"INSERT INTO {child} VALUES (1, 42)", capture=True))


@_provoker("mysql")
def provoke_mysql_not_null() -> Scenario:
    """1048: NULL into a NOT NULL column."""
    table = yield from _my_table()
    return (yield Run("a", f"INSERT INTO {table} VALUES (1, NULL)", capture=True))


@_provoker("mysql")
def provoke_mysql_check() -> Scenario:
    """4025 (MariaDB), which PyMySQL files as OperationalError: a CHECK constraint fails."""
    table = yield from _my_table("id integer PRIMARY KEY, v integer CHECK (v >= 0)")
    return (yield Run("a", f"INSERT INTO {table} VALUES (1, -1)", capture=True))


@_provoker("mysql")
def provoke_mysql_data(*, kind: str = "too_long") -> Scenario:
    """
    Data errors in strict mode (set for the session).

    ``"too_long"`` 1406, ``"out_of_range"`` 1264, ``"incorrect_value"`` 1366.
    """
    _choice("kind", kind, ("too_long", "out_of_range", "incorrect_value"))
    table = yield from _my_table("s varchar(3), n tinyint")
    yield Run("a", "SET SESSION sql_mode = 'STRICT_ALL_TABLES'")
    values = {"too_long": "('abcdef', 1)", "out_of_range": "('a', 1000)"}
    values["incorrect_value"] = "('a', 'forty-two')"
    return (yield Run("a", f"INSERT INTO {table} VALUES {values[kind]}", capture=True))


@_provoker("mysql")
def provoke_mysql_schema(*, kind: str = "no_such_table") -> Scenario:
    """``"no_such_table"`` 1146, ``"bad_field"`` 1054, ``"parse"`` 1064."""
    _choice("kind", kind, ("no_such_table", "bad_field", "parse"))
    if kind == "no_such_table":
        return (yield Run("a", f"SELECT * FROM {unique_name('missing')}", capture=True))
    if kind == "parse":
        return (yield Run("a", "SELEC 1", capture=True))
    table = yield from _my_table()
    return (yield Run("a", f"SELECT no_such_column FROM {table}", capture=True))


@_provoker("mysql")
def provoke_mysql_permission() -> Scenario:
    """1142: SELECT by a user that may only INSERT into the table."""
    table = yield from _my_table()
    user, password = yield from _my_user(f"INSERT ON {table}")
    yield Connect("a", user=user, password=password)
    return (yield Run("a", f"SELECT * FROM {table}", capture=True))


@_provoker("mysql")
def provoke_mysql_record_changed() -> Scenario:
    """
    1020 "Record has changed since last read" (MariaDB snapshot isolation).

    Needs ``innodb_snapshot_isolation`` (MariaDB 10.6.18+, 10.11.8+, 11.x), set for the session.
    """
    table = yield from _my_table(rows="(1, 0)")
    yield Run("a", "SET SESSION innodb_snapshot_isolation = ON")
    yield Run("a", "START TRANSACTION")
    yield Run("a", f"SELECT v FROM {table} WHERE id = 1")
    yield Run("b", f"UPDATE {table} SET v = v + 1 WHERE id = 1")
    error = yield Run("a", f"UPDATE {table} SET v = v + 1 WHERE id = 1", capture=True)
    yield Run("a", "ROLLBACK")
    return error


# -- SQLite -----------------------------------------------------------------------------------


@_provoker("sqlite")
def provoke_sqlite_locked() -> Scenario:
    """5 SQLITE_BUSY "database is locked": BEGIN IMMEDIATE twice, the second with timeout=0."""
    table = yield from _table("id integer PRIMARY KEY")
    yield Run("a", "BEGIN IMMEDIATE")
    yield Run("a", f"INSERT INTO {table} VALUES (1)")
    yield Connect("b", sqlite_timeout=0)
    error = yield Run("b", "BEGIN IMMEDIATE", capture=True)
    yield Run("a", "ROLLBACK")
    return error


@_provoker("sqlite")
def provoke_sqlite_busy_snapshot() -> Scenario:
    """
    517 SQLITE_BUSY_SNAPSHOT (WAL): a read transaction tries to write after another committed.

    Switches the database file to WAL, which persists; the busy handler cannot help here.
    """
    yield Run(ADMIN, "PRAGMA journal_mode = WAL")
    table = yield from _table("id integer PRIMARY KEY", "(1)")
    yield Run("a", "BEGIN")
    yield Run("a", f"SELECT * FROM {table}")
    yield Run("b", f"INSERT INTO {table} VALUES (2)")
    error = yield Run("a", f"INSERT INTO {table} VALUES (3)", capture=True)
    yield Run("a", "ROLLBACK")
    return error


@_provoker("sqlite")
def provoke_sqlite_constraint(*, kind: str = "unique") -> Scenario:
    """
    SQLITE_CONSTRAINT extended codes.

    ``"unique"`` 2067 (a UNIQUE column), ``"primary_key"`` 1555, ``"not_null"`` 1299,
    ``"foreign_key"`` 787 (with ``PRAGMA foreign_keys = ON``), ``"check"`` 275.
    """
    _choice("kind", kind, ("unique", "primary_key", "not_null", "foreign_key", "check"))
    parent = yield from _table("id integer PRIMARY KEY", "(1)")
    table = yield from _table(
        "id integer PRIMARY KEY, code text UNIQUE, v integer NOT NULL CHECK (v >= 0),"
        f" parent integer REFERENCES {parent} (id)",
        "(1, 'x', 0, 1)",
    )
    yield Run("a", "PRAGMA foreign_keys = ON")
    values = {
        "unique": "(2, 'x', 0, 1)",
        "primary_key": "(1, 'y', 0, 1)",
        "not_null": "(2, 'y', NULL, 1)",
        "foreign_key": "(2, 'y', 0, 42)",
        "check": "(2, 'y', -1, 1)",
    }
    return (yield Run("a", f"INSERT INTO {table} VALUES {values[kind]}", capture=True))


@_provoker("sqlite")
def provoke_sqlite_schema(*, kind: str = "no_such_table") -> Scenario:
    """1 SQLITE_ERROR, which sqlite3 files as OperationalError: ``"no_such_table"``, ``"syntax"``."""
    _choice("kind", kind, ("no_such_table", "syntax"))
    if kind == "syntax":
        return (yield Run("a", "SELEC 1", capture=True))
    return (yield Run("a", f"SELECT * FROM {unique_name('missing')}", capture=True))


@_provoker("sqlite")
def provoke_sqlite_read_only() -> Scenario:
    """8 SQLITE_READONLY: an INSERT through a connection opened with ``?mode=ro``."""
    table = yield from _table("id integer PRIMARY KEY")
    yield Connect("a", sqlite_read_only=True)
    return (yield Run("a", f"INSERT INTO {table} VALUES (1)", capture=True))


@_provoker("sqlite")
def provoke_sqlite_closed() -> Scenario:
    """
    A statement on a closed database connection.

    sqlite3 raises ``ProgrammingError("Cannot operate on a closed database.")``; aiosqlite raises
    its own ``ValueError("no active connection")``.
    """
    yield Run("a", "SELECT 1")
    yield CloseDriver("a")
    return (yield Run("a", "SELECT 1", capture=True))
