"""
A COMMIT of unknown outcome settled by ``verify=`` or the built-in commit marker.

The connection is really lost at COMMIT: on PostgreSQL a protocol-aware proxy
(``tests/harness/pgproxy.py``) cuts it either after the server confirmed the COMMIT
(committed, the client cannot know) or before the COMMIT reaches the server (not committed);
on MariaDB the connection is ``KILL``-ed right before COMMIT (not committed), or a small
MySQL-protocol proxy in this module cuts it after the server's OK to COMMIT (committed).
Every test checks both what the call reported and what the server holds: the body ran the
expected number of times and the ledger has exactly one row.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

import txpolicy
from tests.fix_db import url_for_driver
from tests.harness import CutRule, PgProxy, proxy_for
from txpolicy import (
    CommitUnknownError,
    ConfigurationError,
    ErrorCategory,
    IntegrityError,
    RetryPolicy,
    attempts,
    on_commit,
    transactional,
)
from txpolicy._config import set_testing
from txpolicy._decide import check_verdict, is_ambiguous, not_committed
from txpolicy._hooks import AttemptRecord, add_hook
from txpolicy._markers import CommitMarker, apurge_commit_markers, purge_commit_markers

FAST = RetryPolicy(attempts=5, wait_initial=0.0, wait_max=0.0)
MOMENTS = [
    pytest.param("after_commit", True, id="committed"),
    pytest.param("before_commit", False, id="not-committed"),
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


# --- the ledger the bodies write, and the marker table ----------------------------------------


class Ledger:
    """One table of items keyed by a unique id; the body inserts one row per call."""

    def __init__(self, admin: sa.Engine) -> None:
        self.admin = admin
        self.table = f"t_amb_{uuid.uuid4().hex[:10]}"
        self.markers = f"t_mrk_{uuid.uuid4().hex[:10]}"
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE TABLE {self.table} (id varchar(64) PRIMARY KEY, n integer)"))

    def insert(self, session, item_id: str) -> None:
        session.execute(sa.text(f"INSERT INTO {self.table} (id, n) VALUES (:id, 1)"), {"id": item_id})

    def has(self, session, item_id: str) -> bool:
        row = session.execute(sa.text(f"SELECT 1 FROM {self.table} WHERE id = :id"), {"id": item_id}).first()
        return row is not None

    def rows(self) -> list[str]:
        with self.admin.connect() as conn:
            return list(conn.execute(sa.text(f"SELECT id FROM {self.table}")).scalars())

    def marker_keys(self) -> list[str]:
        """The keys in this test's marker table ([] if it was never created)."""
        if not sa.inspect(self.admin).has_table(self.markers):
            return []
        column = "`key`" if self.admin.dialect.name == "mysql" else '"key"'
        with self.admin.connect() as conn:
            return list(conn.execute(sa.text(f"SELECT {column} FROM {self.markers}")).scalars())

    @property
    def marker(self) -> CommitMarker:
        return CommitMarker(table=self.markers)

    def drop(self) -> None:
        with self.admin.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {self.table}"))
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {self.markers}"))


@pytest.fixture
def pg_ledger(pg_engine) -> Iterator[Ledger]:
    ledger = Ledger(pg_engine)
    yield ledger
    ledger.drop()


@pytest.fixture
def mysql_ledger(mysql_engine) -> Iterator[Ledger]:
    ledger = Ledger(mysql_engine)
    yield ledger
    ledger.drop()


@pytest.fixture
def proxy(postgres_url) -> Iterator[PgProxy]:
    """A cutting proxy in front of the PostgreSQL test server."""
    with proxy_for(postgres_url) as p:
        yield p


@pytest.fixture
def proxied(proxy, postgres_url) -> Iterator[sa.Engine]:
    """A psycopg engine whose every connection goes through the proxy."""
    engine = sa.create_engine(proxy.url(postgres_url))
    yield engine
    engine.dispose()


def _options(check: str, ledger: Ledger, verify) -> dict:
    """The keyword that settles an ambiguous commit: verify= or commit_marker=."""
    if check == "verify":
        return {"verify": verify}
    return {"commit_marker": ledger.marker}


# --- PostgreSQL through the cutting proxy: the three forms, sync ------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("check", ["verify", "marker"])
@pytest.mark.parametrize(("moment", "committed"), MOMENTS)
def test_decorator_settles_a_lost_commit(proxy, proxied, pg_ledger, records, check, moment, committed):
    """Committed: the call returns the body's result, ran once; not committed: retried once. One row either way."""
    factory = sessionmaker(proxied)
    runs, verified, callbacks = [], [], []

    def verify(session, item_id, *, tag):
        verified.append((item_id, tag))
        return pg_ledger.has(session, item_id)

    @transactional(factory, policy=FAST, **_options(check, pg_ledger, verify))
    def work(session, item_id, *, tag):
        runs.append(item_id)
        pg_ledger.insert(session, item_id)
        on_commit(lambda: callbacks.append(item_id))
        return f"{tag}-{item_id}"

    item = uuid.uuid4().hex
    proxy.arm(getattr(CutRule, moment)(only_if=pg_ledger.table))

    result = work(item, tag="done")

    assert [committed] == [event.committed for event in proxy.events]
    assert (f"done-{item}", [item]) == (result, pg_ledger.rows())
    assert (1 if committed else 2) == len(runs)
    assert [item] == callbacks
    if check == "verify":
        assert [(item, "done")] == verified
    else:
        assert 1 == len(pg_ledger.marker_keys())
    expected_events = ["success"] if committed else ["retry", "success"]
    assert expected_events == [r.event for r in records]
    if not committed:
        assert ErrorCategory.CONNECTION == records[0].category
        assert records[0].error.during_commit
    assert 0 == proxied.pool.checkedout()


@pytest.mark.postgres
@pytest.mark.parametrize("check", ["verify", "marker"])
@pytest.mark.parametrize(("moment", "committed"), MOMENTS)
def test_attempts_block_settles_a_lost_commit(proxy, proxied, pg_ledger, check, moment, committed):
    """attempts(): verify(session) or the block's marker; committed → the loop ends, else one more attempt."""
    runs = []
    item = uuid.uuid4().hex
    options = _options(check, pg_ledger, lambda session: pg_ledger.has(session, item))
    proxy.arm(getattr(CutRule, moment)(only_if=pg_ledger.table))

    for attempt in attempts(proxied, policy=FAST, **options):
        with attempt as conn:
            runs.append(attempt.num)
            pg_ledger.insert(conn, item)

    assert ([1] if committed else [1, 2]) == runs
    assert [item] == pg_ledger.rows()
    if check == "marker":
        assert 1 == len(pg_ledger.marker_keys())
    assert 0 == proxied.pool.checkedout()


@pytest.mark.postgres
@pytest.mark.parametrize("check", ["verify", "marker"])
@pytest.mark.parametrize(("moment", "committed"), MOMENTS)
def test_context_manager_settles_a_lost_commit(proxy, proxied, pg_ledger, check, moment, committed):
    """One attempt: committed → the block exits normally; not committed → a definite ConnectionError."""
    item = uuid.uuid4().hex
    options = _options(check, pg_ledger, lambda session: pg_ledger.has(session, item))
    proxy.arm(getattr(CutRule, moment)(only_if=pg_ledger.table))
    scope = transactional(sessionmaker(proxied), **options)

    if committed:
        with scope as session:
            pg_ledger.insert(session, item)
        assert [item] == pg_ledger.rows()
    else:
        with pytest.raises(txpolicy.ConnectionError) as info:
            with scope as session:
                pg_ledger.insert(session, item)
        assert (True, 1) == (info.value.during_commit, info.value.attempts)
        assert not isinstance(info.value, CommitUnknownError)
        assert [] == pg_ledger.rows()
        assert [] == pg_ledger.marker_keys()
    assert 0 == proxied.pool.checkedout()


@pytest.mark.postgres
def test_database_forwards_verify_and_counts_the_check_session(proxy, postgres_url, pg_ledger):
    """Database.transactional(verify=...): the check is one more tracked session, closed."""
    db = txpolicy.Database(proxy.url(postgres_url), pool_size=2, max_overflow=0, policy=FAST)
    try:
        @db.transactional(verify=lambda session, item_id: pg_ledger.has(session, item_id))
        def work(session, item_id):
            pg_ledger.insert(session, item_id)
            return item_id

        item = uuid.uuid4().hex
        proxy.arm(CutRule.after_commit(only_if=pg_ledger.table))
        result = work(item)
        stats = db.stats()
    finally:
        db.close()

    assert (item, [item]) == (result, pg_ledger.rows())
    assert (2, 0, 0) == (
        stats.total_sessions_created,
        stats.active_sessions_count,
        stats.engines["primary"].checked_out,
    )


@pytest.mark.postgres
def test_database_attempts_with_a_marker_retry_a_commit_that_did_not_happen(proxy, postgres_url, pg_ledger):
    """Database.attempts(commit_marker=...): the marker of the lost attempt is absent, so it retries."""
    db = txpolicy.Database(proxy.url(postgres_url), pool_size=2, max_overflow=0, policy=FAST)
    item, runs = uuid.uuid4().hex, []
    proxy.arm(CutRule.before_commit(only_if=pg_ledger.table))
    try:
        for attempt in db.attempts(commit_marker=pg_ledger.marker):
            with attempt as session:
                runs.append(attempt.num)
                pg_ledger.insert(session, item)
        stats = db.stats()
    finally:
        db.close()

    assert ([1, 2], [item]) == (runs, pg_ledger.rows())
    assert 1 == len(pg_ledger.marker_keys())
    assert 1 == stats.retries_by_category[ErrorCategory.CONNECTION]
    assert 0 == stats.active_sessions_count


# --- when the check cannot answer -------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("verify", "context_type"),
    [
        pytest.param(lambda session, item_id: 1 / 0, ZeroDivisionError, id="verify-raises"),
        pytest.param(lambda session, item_id: None, TypeError, id="verify-returns-none"),
    ],
)
def test_a_failing_verify_raises_the_original_commit_unknown_error(proxy, proxied, pg_ledger, verify, context_type):
    """verify raised or answered a non-bool: CommitUnknownError, the verify error as __context__, no retry."""
    runs = []

    @transactional(proxied, policy=FAST, verify=verify)
    def work(conn, item_id):
        runs.append(item_id)
        pg_ledger.insert(conn, item_id)

    item = uuid.uuid4().hex
    proxy.arm(CutRule.after_commit(only_if=pg_ledger.table))
    with pytest.raises(CommitUnknownError) as info:
        work(item)

    assert (True, 1, 1) == (info.value.during_commit, info.value.attempts, len(runs))
    assert isinstance(info.value.__context__, context_type)
    assert any("outcome stays unknown" in note for note in getattr(info.value, "__notes__", []))
    assert [item] == pg_ledger.rows()  # it did commit: the caller was told it cannot know
    assert 0 == proxied.pool.checkedout()


@pytest.mark.postgres
def test_not_committed_follows_the_policy_for_connection_failures(proxy, proxied, pg_ledger, records):
    """verify → False where the policy does not retry connection failures: a definite ConnectionError."""
    policy = RetryPolicy(wait_initial=0.0, wait_max=0.0, retry_on=[ErrorCategory.DEADLOCK])
    runs = []

    @transactional(proxied, policy=policy, verify=lambda conn, item_id: pg_ledger.has(conn, item_id))
    def work(conn, item_id):
        runs.append(item_id)
        pg_ledger.insert(conn, item_id)

    proxy.arm(CutRule.before_commit(only_if=pg_ledger.table))
    with pytest.raises(txpolicy.ConnectionError) as info:
        work(uuid.uuid4().hex)

    assert (1, [], True) == (len(runs), pg_ledger.rows(), info.value.during_commit)
    assert [("give_up", ErrorCategory.CONNECTION, "not_retryable")] == [
        (r.event, r.category, r.reason) for r in records
    ]


# --- async: psycopg async and asyncpg through the proxy ---------------------------------------


def _async_url(proxy: PgProxy, postgres_url: str, driver: str) -> sa.URL:
    url = sa.make_url(proxy.url(url_for_driver(postgres_url, driver)))
    if driver == "postgresql+asyncpg":
        # asyncpg takes ssl=, not libpq's sslmode=.
        url = url.difference_update_query(["sslmode"]).update_query_dict({"ssl": "disable"})
    return url


DRIVERS = [
    pytest.param("postgresql+psycopg_async", id="psycopg"),
    pytest.param("postgresql+asyncpg", id="asyncpg"),
]


@pytest.mark.postgres
@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("check", ["verify", "marker"])
@pytest.mark.parametrize(("moment", "committed"), MOMENTS)
async def test_async_decorator_settles_a_lost_commit(proxy, postgres_url, pg_ledger, driver, check, moment, committed):
    """AsyncSession: an async verify (or the marker) settles the lost COMMIT exactly as in sync code."""
    engine = create_async_engine(_async_url(proxy, postgres_url, driver))
    runs, verified = [], []

    async def verify(session, item_id):
        verified.append(item_id)
        return await session.run_sync(lambda s: pg_ledger.has(s, item_id))

    try:
        @transactional(async_sessionmaker(engine), policy=FAST, **_options(check, pg_ledger, verify))
        async def work(session, item_id):
            runs.append(item_id)
            await session.run_sync(lambda s: pg_ledger.insert(s, item_id))
            return item_id

        item = uuid.uuid4().hex
        proxy.arm(getattr(CutRule, moment)(only_if=pg_ledger.table))
        result = await work(item)
        checked_out = engine.sync_engine.pool.checkedout()
    finally:
        await engine.dispose()

    assert [committed] == [event.committed for event in proxy.events]
    assert (item, [item]) == (result, pg_ledger.rows())
    assert (1 if committed else 2) == len(runs)
    assert ([item] if check == "verify" else []) == verified
    assert (0 if check == "verify" else 1) == len(pg_ledger.marker_keys())
    assert 0 == checked_out


@pytest.mark.postgres
@pytest.mark.anyio
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(("moment", "committed"), MOMENTS)
async def test_async_attempts_and_context_manager_with_a_marker(proxy, postgres_url, pg_ledger, driver, moment, committed):
    """async for attempts(...) and async with transactional(...) on an AsyncEngine, with the marker."""
    engine = create_async_engine(_async_url(proxy, postgres_url, driver))
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    runs = []
    try:
        proxy.arm(getattr(CutRule, moment)(only_if=pg_ledger.table))
        async for attempt in attempts(engine, policy=FAST, commit_marker=pg_ledger.marker):
            async with attempt as conn:
                runs.append(attempt.num)
                await conn.run_sync(lambda c: pg_ledger.insert(c, first))

        proxy.arm(getattr(CutRule, moment)(only_if=pg_ledger.table))
        scope = transactional(engine, commit_marker=pg_ledger.marker)
        raised = None
        try:
            async with scope as conn:
                await conn.run_sync(lambda c: pg_ledger.insert(c, second))
        except txpolicy.ConnectionError as exc:
            raised = exc
        checked_out = engine.sync_engine.pool.checkedout()
    finally:
        await engine.dispose()

    assert ([1] if committed else [1, 2]) == runs
    assert (raised is None) == committed
    assert sorted([first, second] if committed else [first]) == sorted(pg_ledger.rows())
    assert (2 if committed else 1) == len(pg_ledger.marker_keys())
    assert 0 == checked_out


@pytest.mark.postgres
@pytest.mark.anyio
async def test_async_database_forwards_the_marker(proxy, postgres_url, pg_ledger):
    """AsyncDatabase.transactional(commit_marker=...): committed after all, returns without re-running."""
    db = txpolicy.AsyncDatabase(_async_url(proxy, postgres_url, "postgresql+psycopg_async"), policy=FAST)
    runs = []
    try:
        @db.transactional(commit_marker=pg_ledger.marker)
        async def work(session, item_id):
            runs.append(item_id)
            await session.run_sync(lambda s: pg_ledger.insert(s, item_id))

        proxy.arm(CutRule.after_commit(only_if=pg_ledger.table))
        await work(uuid.uuid4().hex)
        stats = db.stats()
    finally:
        await db.aclose()

    assert (1, 1, 1) == (len(runs), len(pg_ledger.rows()), len(pg_ledger.marker_keys()))
    assert (0, 0) == (stats.active_sessions_count, stats.engines["primary"].checked_out)


# --- MariaDB: a real KILL right before COMMIT, and a MySQL-protocol proxy after it ------------


def _kill_before_commit(engine: sa.Engine, admin: sa.Engine, only_if: str, *, times: int = 1) -> list[int]:
    """
    KILL the connection in the engine's ``commit`` event (fired right before the DBAPI COMMIT).

    Only a transaction that ran a statement containing *only_if* is killed (not, say, the
    one that creates the marker table).
    """
    killed: list[int] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def watch(conn, cursor, statement, *rest):
        if only_if in statement:
            conn.info["txpolicy_test_target"] = True

    @sa.event.listens_for(engine, "commit")
    def kill(conn):
        if not conn.info.pop("txpolicy_test_target", False) or len(killed) >= times:
            return
        thread_id = conn.connection.dbapi_connection.thread_id()
        with admin.connect() as other:
            other.execute(sa.text(f"KILL {int(thread_id)}"))
            for _ in range(500):  # bounded: at most ~5 s
                gone = other.execute(
                    sa.text("SELECT COUNT(*) = 0 FROM information_schema.processlist WHERE id = :id"),
                    {"id": thread_id},
                ).scalar_one()
                if gone:
                    break
                time.sleep(0.01)
        killed.append(thread_id)

    return killed


@pytest.mark.mysql
@pytest.mark.parametrize("check", ["verify", "marker"])
def test_mariadb_kill_before_commit_is_retried_once(mysql_url, mysql_engine, mysql_ledger, records, check):
    """KILL right before COMMIT: the check finds no commit, the call retries; one row, one marker."""
    engine = sa.create_engine(mysql_url)
    killed = _kill_before_commit(engine, mysql_engine, mysql_ledger.table)
    runs = []
    try:
        @transactional(
            sessionmaker(engine),
            policy=FAST,
            **_options(check, mysql_ledger, lambda session, item_id: mysql_ledger.has(session, item_id)),
        )
        def work(session, item_id):
            runs.append(item_id)
            mysql_ledger.insert(session, item_id)

        item = uuid.uuid4().hex
        work(item)
        checked_out = engine.pool.checkedout()
    finally:
        engine.dispose()

    assert (1, 2, [item]) == (len(killed), len(runs), mysql_ledger.rows())
    assert ["retry", "success"] == [r.event for r in records]
    assert ErrorCategory.CONNECTION == records[0].category
    assert (0 if check == "verify" else 1) == len(mysql_ledger.marker_keys())
    assert 0 == checked_out


class MySQLCutProxy:
    """
    A loopback TCP proxy in front of MariaDB that cuts a connection at a COMMIT.

    MySQL protocol packets are framed as a 3-byte little-endian length, a sequence byte and
    the payload; a ``COM_QUERY`` (``0x03``) whose text is ``COMMIT``, on a connection whose
    transaction mentioned ``only_if``, is forwarded, and the server's answer (an OK packet:
    the commit happened) is held back while both sockets are closed. ``events`` records
    whether the server said OK.
    """

    def __init__(self, upstream: tuple[str, int], only_if: str) -> None:
        self.upstream, self.only_if = upstream, only_if
        self.armed = 0
        self.events: list[bool] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._closing = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._start(self._accept)

    def url(self, base: str) -> str:
        return sa.make_url(base).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def _start(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(self.upstream, timeout=10)
            for sock in (client, server):
                sock.settimeout(None)
            state = {"tx": [], "pending": False}
            with self._lock:
                self._sockets += [client, server]
            self._start(self._pump_client, client, server, state)
            self._start(self._pump_server, server, client, state)

    @staticmethod
    def _packet(sock: socket.socket) -> bytes:
        head = _recv(sock, 4)
        return head + _recv(sock, int.from_bytes(head[:3], "little"))

    def _pump_client(self, client, server, state) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while True:
                packet = self._packet(client)
                if packet[4:5] == b"\x03":
                    sql = packet[5:].decode("utf-8", "replace").strip().upper()
                    with self._lock:
                        if sql == "COMMIT":
                            if self.armed and any(self.only_if.upper() in s for s in state["tx"]):
                                self.armed -= 1
                                state["pending"] = True
                            state["tx"] = []
                        elif sql == "ROLLBACK":
                            state["tx"] = []
                        else:
                            state["tx"].append(sql)
                server.sendall(packet)
        self._cut(client, server)

    def _pump_server(self, server, client, state) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while True:
                packet = self._packet(server)
                with self._lock:
                    pending, state["pending"] = state["pending"], False
                if pending:
                    with self._lock:
                        self.events.append(packet[4:5] == b"\x00")
                    break
                client.sendall(packet)
        self._cut(client, server)

    @staticmethod
    def _cut(*socks: socket.socket) -> None:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closing.set()
        self._listener.close()
        with self._lock:
            socks, threads = list(self._sockets), list(self._threads)
        self._cut(*socks)
        for thread in threads:
            thread.join(5)
        for sock in socks:
            sock.close()


def _recv(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionAbortedError("peer closed")
        data += chunk
    return data


@pytest.mark.mysql
@pytest.mark.parametrize("check", ["verify", "marker"])
def test_mariadb_commit_lost_after_the_server_committed(mysql_url, mysql_ledger, records, check):
    """The server said OK to COMMIT but the client never heard it: the check finds it, no second run."""
    url = sa.make_url(mysql_url)
    cutter = MySQLCutProxy((url.host or "127.0.0.1", url.port or 3306), only_if=mysql_ledger.table)
    engine = sa.create_engine(cutter.url(mysql_url))
    runs = []
    try:
        @transactional(
            sessionmaker(engine),
            policy=FAST,
            **_options(check, mysql_ledger, lambda session, item_id: mysql_ledger.has(session, item_id)),
        )
        def work(session, item_id):
            runs.append(item_id)
            mysql_ledger.insert(session, item_id)
            return item_id

        item = uuid.uuid4().hex
        cutter.armed = 1
        result = work(item)
        checked_out = engine.pool.checkedout()
    finally:
        engine.dispose()
        cutter.close()

    assert [True] == cutter.events
    assert (item, [item], 1) == (result, mysql_ledger.rows(), len(runs))
    assert ["success"] == [r.event for r in records]
    assert (0 if check == "verify" else 1) == len(mysql_ledger.marker_keys())
    assert 0 == checked_out


# --- the probe waits for a lost transaction that is still open ---------------------------------


def _blocked(admin: sa.Engine, connection_id: int) -> bool:
    """Whether the server connection *connection_id* is waiting for a row lock."""
    if admin.dialect.name == "postgresql":
        sql = "SELECT count(*) > 0 FROM pg_locks WHERE pid = :id AND NOT granted"
    else:
        sql = "SELECT count(*) > 0 FROM information_schema.innodb_trx WHERE trx_mysql_thread_id = :id AND trx_state = 'LOCK WAIT'"
    with admin.connect() as conn:
        return bool(conn.execute(sa.text(sql), {"id": connection_id}).scalar_one())


def _probe_while_key_is_in_flight(admin: sa.Engine, url: str, table: str, *, finish: str) -> tuple[bool, bool]:
    """
    A transaction inserts a marker key and stays open; the probe (from another connection)
    must wait for it, then answer from how it ended: (probe was seen waiting, key found).
    """
    from txpolicy._markers import ensure_table, probe_found_key, probe_statement

    engine = sa.create_engine(url)
    try:
        ensure_table(engine, table)
        name = engine.dialect.name
        column = "`key`" if name == "mysql" else '"key"'
        key = uuid.uuid4().hex
        statement = probe_statement(name, table, key)
        result: list[bool] = []
        with engine.connect() as lost:
            lost.execute(sa.text(f"INSERT INTO {table} ({column}) VALUES (:k)"), {"k": key})
            with engine.connect() as probe:
                if name == "postgresql":
                    probe.execute(sa.text("SET lock_timeout = '20s'"))
                    probe_id = probe.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
                else:
                    probe.execute(sa.text("SET SESSION innodb_lock_wait_timeout = 20"))
                    probe_id = probe.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one()
                probe.rollback()

                def run_probe() -> None:
                    found = probe_found_key(probe.execute(sa.text(statement.sql), dict(statement.params)).rowcount)
                    probe.rollback()
                    result.append(found)

                thread = threading.Thread(target=run_probe)
                thread.start()
                waiting = False
                # InnoDB refreshes information_schema.innodb_trx only when it was not read for
                # 0.1 s: poll more slowly than that.
                for _ in range(50):  # bounded: at most ~10 s
                    time.sleep(0.2)
                    if _blocked(admin, probe_id):
                        waiting = True
                        break
                answered_early = bool(result)
                getattr(lost, finish)()
                thread.join(30)
                assert not thread.is_alive()
        return waiting and not answered_early, result[0]
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize(("finish", "found"), [("commit", True), ("rollback", False)])
def test_postgres_probe_waits_for_the_lost_transaction(postgres_url, pg_engine, pg_ledger, finish, found):
    """Unlike a SELECT, the probe cannot answer 'absent' while the lost transaction may still commit."""
    assert (True, found) == _probe_while_key_is_in_flight(pg_engine, postgres_url, pg_ledger.markers, finish=finish)


@pytest.mark.mysql
@pytest.mark.parametrize(("finish", "found"), [("commit", True), ("rollback", False)])
def test_mariadb_probe_waits_for_the_lost_transaction(mysql_url, mysql_engine, mysql_ledger, finish, found):
    """INSERT IGNORE waits for the open transaction holding the key, then answers from its end."""
    assert (True, found) == _probe_while_key_is_in_flight(mysql_engine, mysql_url, mysql_ledger.markers, finish=finish)


# --- the marker table: created on demand, once, and purged ------------------------------------


def _statements(engine: sa.Engine) -> list[str]:
    """Every statement the engine sends from now on (appended as they run)."""
    seen: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda conn, cursor, statement, *rest: seen.append(statement))
    return seen


@pytest.mark.postgres
def test_marker_table_is_created_on_demand_once_across_threads(postgres_url, pg_engine, pg_ledger):
    """Eight threads make their first marked call together: one CREATE TABLE, then one INSERT per call."""
    engine = sa.create_engine(postgres_url, pool_size=8, max_overflow=0)
    seen = _statements(engine)
    assert not sa.inspect(pg_engine).has_table(pg_ledger.markers)

    @transactional(engine, commit_marker=pg_ledger.marker)
    def work(conn, item_id):
        pg_ledger.insert(conn, item_id)

    barrier = threading.Barrier(8, timeout=30)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            work(uuid.uuid4().hex)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
    finally:
        engine.dispose()

    assert [] == errors
    assert sa.inspect(pg_engine).has_table(pg_ledger.markers)
    assert 1 == sum(s.startswith("CREATE TABLE IF NOT EXISTS") for s in seen)
    assert 8 == sum(s.startswith(f"INSERT INTO {pg_ledger.markers}") for s in seen)
    assert (8, 8) == (len(pg_ledger.rows()), len(set(pg_ledger.marker_keys())))


@pytest.mark.postgres
def test_an_existing_marker_table_is_used_without_ddl(postgres_url, pg_engine, pg_ledger):
    """A table made by someone else (another process, a DBA) is found by a probe; no CREATE is sent."""
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'CREATE TABLE {pg_ledger.markers} ("key" text PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now())'))
    engine = sa.create_engine(postgres_url)
    seen = _statements(engine)
    try:
        transactional(engine, commit_marker=pg_ledger.marker)(lambda conn: None)()
    finally:
        engine.dispose()

    assert 0 == sum("CREATE" in s for s in seen)
    assert 1 == len(pg_ledger.marker_keys())


@pytest.mark.postgres
def test_option_off_sends_no_marker_statement(pg_engine, pg_ledger):
    """Without verify= or commit_marker=, the transaction is the body's statements only; with the marker, one INSERT more."""
    seen = _statements(pg_engine)
    plain = transactional(pg_engine)(lambda conn, item_id: pg_ledger.insert(conn, item_id))
    marked = transactional(pg_engine, commit_marker=pg_ledger.marker)(
        lambda conn, item_id: pg_ledger.insert(conn, item_id)
    )
    verified = transactional(pg_engine, verify=lambda conn, item_id: True)(
        lambda conn, item_id: pg_ledger.insert(conn, item_id)
    )
    marked(uuid.uuid4().hex)  # creates the table
    plain_start = len(seen)
    plain(uuid.uuid4().hex)
    verified(uuid.uuid4().hex)
    marked_start = len(seen)
    marked(uuid.uuid4().hex)

    assert [f"INSERT INTO {pg_ledger.table}"] * 2 == [s.split(" (")[0] for s in seen[plain_start:marked_start]]
    assert [f"INSERT INTO {pg_ledger.table}", f"INSERT INTO {pg_ledger.markers}"] == [
        s.split(" (")[0] for s in seen[marked_start:]
    ]


@pytest.mark.postgres
def test_key_function_keys_the_call_and_refuses_a_repeat(pg_engine, pg_ledger, records):
    """A key function makes the key from the call's arguments; a repeated key is an IntegrityError, rolled back."""
    runs = []
    marker = CommitMarker(key=lambda order, item_id: f"order-{order}", table=pg_ledger.markers)

    @transactional(pg_engine, policy=FAST, commit_marker=marker)
    def work(conn, order, item_id):
        runs.append(item_id)
        pg_ledger.insert(conn, item_id)

    work(7, "first")
    work(8, "second")
    with pytest.raises(IntegrityError):
        work(7, "again")

    assert ["first", "second", "again"] == runs  # the repeat ran once, and was not retried
    assert ["first", "second"] == sorted(pg_ledger.rows())
    assert ["order-7", "order-8"] == sorted(pg_ledger.marker_keys())
    assert ["success", "success", "give_up"] == [r.event for r in records]


def _backdate(engine: sa.Engine, table: str, keys: list[str]) -> None:
    """Make *keys* two days old (server-side expressions per dialect)."""
    name = engine.dialect.name
    column = "`key`" if name == "mysql" else '"key"'
    expression = {
        "postgresql": "now() - interval '2 days'",
        "mysql": "NOW(6) - INTERVAL 2 DAY",
        "sqlite": "datetime('now', '-2 days')",
    }[name]
    with engine.begin() as conn:
        for key in keys:
            conn.execute(sa.text(f"UPDATE {table} SET created_at = {expression} WHERE {column} = :k"), {"k": key})


def _purge_case(engine: sa.Engine, table: str) -> tuple[int, list[str]]:
    """Four markers, two backdated; purge older than one day."""
    keys = [f"k{i}" for i in range(4)]
    for key in keys:
        transactional(engine, commit_marker=CommitMarker(key=lambda key=key: key, table=table))(lambda conn: None)()
    _backdate(engine, table, keys[:2])
    deleted = purge_commit_markers(engine, older_than=dt.timedelta(days=1), table=table)
    column = "`key`" if engine.dialect.name == "mysql" else '"key"'
    with engine.connect() as conn:
        left = sorted(conn.execute(sa.text(f"SELECT {column} FROM {table}")).scalars())
    return deleted, left


@pytest.mark.postgres
def test_purge_deletes_old_markers_only_postgres(pg_engine, pg_ledger):
    """purge_commit_markers(older_than=1 day) on PostgreSQL: the two backdated keys go, the fresh stay."""
    assert (2, ["k2", "k3"]) == _purge_case(pg_engine, pg_ledger.markers)


@pytest.mark.mysql
def test_purge_deletes_old_markers_only_mariadb(mysql_engine, mysql_ledger):
    """purge_commit_markers(older_than=1 day) on MariaDB."""
    assert (2, ["k2", "k3"]) == _purge_case(mysql_engine, mysql_ledger.markers)


def test_purge_deletes_old_markers_only_sqlite(tmp_path):
    """purge_commit_markers on SQLite, with the default table name (created on demand)."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        assert (2, ["k2", "k3"]) == _purge_case(engine, "txpolicy_commit_markers")
        # 1 second is not old enough for the fresh ones either.
        assert 0 == purge_commit_markers(engine, older_than=1)
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.anyio
async def test_apurge_deletes_old_markers_only_asyncpg(postgres_url, pg_engine, pg_ledger):
    """apurge_commit_markers through asyncpg: only markers older than *older_than* are deleted."""
    engine = create_async_engine(url_for_driver(postgres_url, "postgresql+asyncpg"))
    try:
        for key in ("old", "new"):
            marker = CommitMarker(key=lambda key=key: key, table=pg_ledger.markers)

            @transactional(engine, commit_marker=marker)
            async def noop(conn):
                return None

            await noop()
        _backdate(pg_engine, pg_ledger.markers, ["old"])
        deleted = await apurge_commit_markers(engine, older_than=3600, table=pg_ledger.markers)
    finally:
        await engine.dispose()

    assert (1, ["new"]) == (deleted, pg_ledger.marker_keys())


@pytest.mark.anyio
async def test_marker_on_aiosqlite_writes_one_key_per_call(tmp_path):
    """aiosqlite: the marker table is created on demand and each call leaves exactly one key."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    try:
        @transactional(engine, commit_marker=True)
        async def noop(conn):
            return 1

        assert [1, 1, 1] == [await noop() for _ in range(3)]
        async with engine.connect() as conn:
            count = (await conn.execute(sa.text("SELECT count(*) FROM txpolicy_commit_markers"))).scalar_one()
        deleted = await apurge_commit_markers(engine, older_than=dt.timedelta(days=1))
    finally:
        await engine.dispose()

    assert (3, 0) == (count, deleted)


# --- bad input fails at construction ----------------------------------------------------------


async def _async_verify(session) -> bool:
    return True


def _sync_verify(session) -> bool:
    return True


def _generator_verify(session):
    yield True


@pytest.mark.parametrize(
    ("make_bind", "kwargs", "error"),
    [
        pytest.param("sync", {"verify": 42}, TypeError, id="verify-not-callable"),
        pytest.param("sync", {"verify": _async_verify}, TypeError, id="async-verify-sync-bind"),
        pytest.param("async", {"verify": _sync_verify}, TypeError, id="sync-verify-async-bind"),
        pytest.param("sync", {"verify": _generator_verify}, TypeError, id="generator-verify"),
        pytest.param("sync", {"commit_marker": 3}, TypeError, id="marker-int"),
        pytest.param("sync", {"commit_marker": "yes"}, TypeError, id="marker-str"),
        pytest.param("sync", {"verify": _sync_verify, "commit_marker": True}, ConfigurationError, id="both"),
        pytest.param("sync", {"commit_marker": True, "read_only": True}, ConfigurationError, id="marker-read-only"),
    ],
)
@pytest.mark.parametrize("factory", [transactional, attempts], ids=["transactional", "attempts"])
def test_bad_options_fail_at_construction(factory, make_bind, kwargs, error):
    """A wrong verify= or commit_marker= is refused before any function is decorated or run."""
    sync_engine = sa.create_engine("sqlite://")
    async_engine = create_async_engine("sqlite+aiosqlite://")
    try:
        bind = sync_engine if make_bind == "sync" else async_engine
        with pytest.raises(error):
            factory(bind, **kwargs)
    finally:
        sync_engine.dispose()
        async_engine.sync_engine.dispose()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"table": "markers; DROP TABLE x"}, ValueError, id="table-injection"),
        pytest.param({"table": "a.b.c"}, ValueError, id="table-three-parts"),
        pytest.param({"table": 5}, TypeError, id="table-int"),
        pytest.param({"key": "not callable"}, TypeError, id="key-not-callable"),
        pytest.param({"key": _async_verify}, TypeError, id="key-async"),
    ],
)
def test_bad_commit_marker_fails_at_construction(kwargs, error):
    """CommitMarker validates its table name (spliced into SQL) and key function when it is built."""
    with pytest.raises(error):
        CommitMarker(**kwargs)


@pytest.mark.parametrize(
    ("key", "error"),
    [
        pytest.param(lambda: 5, TypeError, id="not-a-string"),
        pytest.param(lambda: "", ValueError, id="empty"),
        pytest.param(lambda: "x" * 256, ValueError, id="too-long"),
    ],
)
def test_bad_key_fails_before_the_first_attempt(tmp_path, key, error):
    """A key function returning a bad key fails the call before anything is executed."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'k.db'}")
    seen = _statements(engine)
    runs = []
    try:
        with pytest.raises(error):
            transactional(engine, commit_marker=key)(lambda conn: runs.append(1))()
    finally:
        engine.dispose()

    assert ([], []) == (runs, seen)


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        pytest.param(True, CommitMarker(), id="true"),
        pytest.param(CommitMarker(table="s.m"), CommitMarker(table="s.m"), id="instance"),
        pytest.param(_sync_verify, CommitMarker(key=_sync_verify), id="key-function"),
        pytest.param(False, None, id="off"),
    ],
)
def test_commit_marker_option_forms(option, expected):
    """commit_marker=True is CommitMarker(); a CommitMarker is used as given."""
    from txpolicy._markers import resolve_commit_marker

    assert expected == resolve_commit_marker(option)


def test_purge_rejects_bad_arguments():
    """purge_commit_markers: a positive age, a valid table, a bind of the right kind."""
    engine = sa.create_engine("sqlite://")
    async_engine = create_async_engine("sqlite+aiosqlite://")
    try:
        for kwargs, error in [
            ({"older_than": 0}, ValueError),
            ({"older_than": dt.timedelta(seconds=-1)}, ValueError),
            ({"older_than": "1 day"}, TypeError),
            ({"table": "x y"}, ValueError),
        ]:
            with pytest.raises(error):
                purge_commit_markers(engine, **kwargs)
        with pytest.raises(TypeError):
            purge_commit_markers(async_engine)
        with pytest.raises(TypeError):
            purge_commit_markers(object())
    finally:
        engine.dispose()
        async_engine.sync_engine.dispose()


# --- the decisions, without a database --------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(True, "committed", id="true"),
        pytest.param(False, "not_committed", id="false"),
        pytest.param(None, "unknown", id="none"),
        pytest.param(1, "unknown", id="truthy-int"),
        pytest.param(RuntimeError("x"), "unknown", id="exception"),
    ],
)
def test_check_verdict_needs_a_real_bool(answer, expected):
    """Only True and False settle the outcome; a forgotten return (None) must not mean 'retry'."""
    assert expected == check_verdict(answer)


def test_only_a_commit_unknown_raised_by_commit_is_ambiguous():
    """A lost COMMIT is ambiguous; the same category from a statement, or a connection error, is not."""
    assert [True, False, False] == [
        is_ambiguous(CommitUnknownError("x", during_commit=True)),
        is_ambiguous(CommitUnknownError("x", during_commit=False)),
        is_ambiguous(txpolicy.ConnectionError("x", during_commit=True)),
    ]


def test_not_committed_is_a_connection_failure_with_the_same_codes():
    """The verified 'did not commit' error keeps codes and original, and is retryable."""
    original = OSError("socket closed")
    error = CommitUnknownError(
        "lost", sqlstate="08006", dialect="postgresql", original=original, during_commit=True, attempts=2
    )
    definite = not_committed(error)

    assert (txpolicy.ConnectionError, "08006", "postgresql", True, 2, True, "lost") == (
        type(definite),
        definite.sqlstate,
        definite.dialect,
        definite.during_commit,
        definite.attempts,
        definite.retryable,
        str(definite),
    )
    assert original is definite.original
