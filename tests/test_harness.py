"""
The fault and scale harnesses themselves, with plain drivers (no txpolicy).

The proxy must cut at exactly the moment it claims (the row is committed or not, as the
recorded event says, and the client sees its connection lost either way); the replication pair
must really stream, refuse writes on the standby and accept them after promotion; PgBouncer
must multiplex many clients onto its small pool.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import psycopg.errors
import pytest
import sqlalchemy as sa

from tests.harness import (
    CutRule,
    Moment,
    PgProxy,
    ReplicationPair,
    pgbouncer_for,
    proxy_for,
    replication_pair,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[PgProxy]:
    """A cutting proxy in front of the test server."""
    with proxy_for(postgres_url) as p:
        yield p


@pytest.fixture
def direct(postgres_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection straight to the server, to look behind the proxy's back."""
    host, port = "127.0.0.1", sa.make_url(postgres_url).port or 5432
    with psycopg.connect(f"host={host} port={port} dbname=test user=postgres", autocommit=True) as conn:
        yield conn


@pytest.fixture
def ledger(direct: psycopg.Connection, table_name: str) -> Iterator[str]:
    """A one-column table with a primary key, dropped afterwards."""
    direct.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY)")
    yield table_name
    direct.execute(f"DROP TABLE IF EXISTS {table_name}")


def _ids(direct: psycopg.Connection, table: str) -> list[int]:
    return [row[0] for row in direct.execute(f"SELECT id FROM {table} ORDER BY id")]


def _commit_simple(conn: psycopg.Connection) -> None:
    conn.commit()  # psycopg sends a simple-protocol Query "COMMIT"


def _commit_extended(conn: psycopg.Connection) -> None:
    conn.execute("COMMIT")  # Parse/Bind/Describe/Execute/Sync of "COMMIT"


@pytest.mark.parametrize("commit", [_commit_simple, _commit_extended], ids=["simple", "extended"])
@pytest.mark.parametrize(
    ("rule", "expected_ids", "committed"),
    [
        pytest.param(CutRule.before_commit(), [], False, id="before_commit"),
        pytest.param(CutRule.after_commit(), [1], True, id="after_commit"),
        pytest.param(CutRule.mid_transaction(1), [], False, id="mid_transaction"),
    ],
)
def test_proxy_cuts_at_the_chosen_moment(proxy, direct, ledger, commit, rule, expected_ids, committed):
    """The row is committed exactly when the proxy says so; the client loses its connection either way."""
    arm = proxy.arm(CutRule(rule.moment, rule.after_statements, only_if=ledger))
    conn = psycopg.connect(proxy.conninfo())
    try:
        with pytest.raises(psycopg.OperationalError) as info:
            conn.execute(f"INSERT INTO {ledger} VALUES (1)")
            conn.execute("SELECT 1")
            commit(conn)
    finally:
        conn.close()

    assert "server closed the connection" in str(info.value) or conn.broken
    assert 1 == arm.fired
    assert [committed] == [event.committed for event in proxy.events]
    assert expected_ids == _ids(direct, ledger)


def test_proxy_mid_transaction_cuts_before_the_next_statement(proxy, direct, ledger):
    """after_statements=N lets N statements of the transaction through and cuts the next one."""
    proxy.arm(CutRule.mid_transaction(2, only_if=ledger))
    conn = psycopg.connect(proxy.conninfo())
    done = []
    try:
        with pytest.raises(psycopg.OperationalError):
            for ident in (1, 2, 3, 4):
                conn.execute(f"INSERT INTO {ledger} VALUES ({ident})")
                done.append(ident)
    finally:
        conn.close()

    assert [1, 2] == done
    assert proxy.events[0].sql.endswith("VALUES (3)")  # the statement it cut at, not forwarded
    assert [] == _ids(direct, ledger)


def test_proxy_after_commit_records_a_server_side_rollback(proxy, direct, ledger):
    """COMMIT of a failed transaction is answered ROLLBACK: the cut is recorded as not committed."""
    proxy.arm(CutRule.after_commit(only_if=ledger))
    conn = psycopg.connect(proxy.conninfo())
    try:
        conn.execute(f"INSERT INTO {ledger} VALUES (1)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(f"INSERT INTO {ledger} VALUES (1)")
        with pytest.raises(psycopg.OperationalError):
            conn.execute("COMMIT")
    finally:
        conn.close()

    assert [False] == [event.committed for event in proxy.events]
    assert [] == _ids(direct, ledger)


def test_proxy_is_transparent_until_armed_and_fires_times(proxy, direct, ledger):
    """Unarmed, traffic passes; an arm fires exactly `times` times and then passes traffic again."""
    arm = proxy.arm(CutRule.before_commit(only_if=ledger), times=2)
    outcomes = []
    for ident in (1, 2, 3):
        conn = psycopg.connect(proxy.conninfo())
        try:
            conn.execute(f"INSERT INTO {ledger} VALUES ({ident})")
            conn.commit()
            outcomes.append("ok")
        except psycopg.OperationalError:
            outcomes.append("cut")
        finally:
            conn.close()

    assert ["cut", "cut", "ok"] == outcomes
    assert 2 == arm.fired
    assert [3] == _ids(direct, ledger)


def test_proxy_only_if_spares_other_transactions(proxy, direct, ledger):
    """A rule aimed at one table leaves transactions that do not mention it alone; remove() disarms."""
    arm = proxy.arm(CutRule.before_commit(only_if=ledger))
    with psycopg.connect(proxy.conninfo()) as conn:
        conn.execute("SELECT 1")
        conn.commit()
    arm.remove()
    with psycopg.connect(proxy.conninfo()) as conn:
        conn.execute(f"INSERT INTO {ledger} VALUES (1)")
        conn.commit()

    assert 0 == arm.fired
    assert [1] == _ids(direct, ledger)


def test_proxy_cut_rolls_back_a_transaction_that_holds_locks(proxy, direct, ledger):
    """A cut before COMMIT ends the server-side transaction: its row lock is released."""
    direct.execute(f"INSERT INTO {ledger} VALUES (1)")
    proxy.arm(CutRule.before_commit(only_if=ledger))
    conn = psycopg.connect(proxy.conninfo())
    try:
        with pytest.raises(psycopg.OperationalError):
            conn.execute(f"UPDATE {ledger} SET id = 2 WHERE id = 1")
            conn.commit()
    finally:
        conn.close()
    with direct.transaction():
        direct.execute("SET LOCAL lock_timeout = '5s'")
        direct.execute(f"UPDATE {ledger} SET id = 3 WHERE id = 1")

    assert [3] == _ids(direct, ledger)


@pytest.mark.anyio
async def test_proxy_cuts_asyncpg_commit(proxy, direct, ledger):
    """asyncpg's COMMIT (a simple query "COMMIT;") is recognised too."""
    asyncpg = pytest.importorskip("asyncpg")
    proxy.arm(CutRule.after_commit(only_if=ledger))
    conn = await asyncpg.connect(host=proxy.host, port=proxy.port, user="postgres", database="test", ssl=False)
    try:
        with pytest.raises((ConnectionError, asyncpg.exceptions.ConnectionDoesNotExistError)):
            async with conn.transaction():
                await conn.execute(f"INSERT INTO {ledger} VALUES (7)")
    finally:
        conn.terminate()

    assert [True] == [event.committed for event in proxy.events]
    assert [7] == _ids(direct, ledger)


def test_proxy_cut_all_and_close_leave_nothing_open(postgres_url):
    """cut_all() drops every connection; close() joins every thread; the port is released."""
    with proxy_for(postgres_url) as proxy:
        conns = [psycopg.connect(proxy.conninfo(), autocommit=True) for _ in range(3)]
        try:
            for conn in conns:
                conn.execute("SELECT 1")
            active = proxy.active_connections
            cut = proxy.cut_all()
            failures = 0
            for conn in conns:
                try:
                    conn.execute("SELECT 1")
                except psycopg.OperationalError:
                    failures += 1
        finally:
            for conn in conns:
                conn.close()
        port = proxy.port
    leftovers = [t.name for t in threading.enumerate() if t.name.startswith("pgproxy")]

    assert (3, 3, 3) == (active, cut, failures)
    assert [] == leftovers
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"host=127.0.0.1 port={port} dbname=test user=postgres connect_timeout=2")


def test_proxy_refuses_bad_configuration():
    """Non-loopback upstreams, impossible rules and arms are refused at once."""
    with pytest.raises(ValueError):
        PgProxy(("10.0.0.1", 5432))
    with pytest.raises(ValueError):
        CutRule.mid_transaction(-1)
    with pytest.raises(TypeError):
        CutRule("before_commit")  # type: ignore[arg-type]


def test_proxy_url_points_at_the_proxy(proxy, postgres_url):
    """url() keeps driver, user and database and adds sslmode=disable."""
    url = sa.make_url(proxy.url(postgres_url))

    assert ("127.0.0.1", proxy.port, "test", "disable") == (url.host, url.port, url.database, url.query["sslmode"])
    assert Moment.BEFORE_COMMIT == CutRule.before_commit().moment


# -- replication ------------------------------------------------------------------------------


@pytest.fixture
def pair() -> Iterator[ReplicationPair]:
    """A fresh streaming-replication pair (destructive tests each get their own)."""
    with replication_pair() as p:
        yield p


def test_replication_pair_streams_and_fails_over(pair):
    """The standby streams, refuses writes, and accepts them after promotion; the multi-host URL follows."""
    pair.primary.execute("CREATE TABLE t (id int PRIMARY KEY)")
    pair.primary.execute("INSERT INTO t VALUES (1)")
    # Synchronous replication guarantees the WAL is flushed on the standby, not yet streaming.
    streaming = pair.primary.execute(
        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = 'sync'"
    )
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        pair.standby.execute("INSERT INTO t VALUES (2)")
    engine = sa.create_engine(pair.multihost_url(), poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            before = conn.execute(sa.text("SELECT inet_server_port()")).scalar()
        pair.stop_primary("immediate")
        pair.promote()
        pair.standby.execute("INSERT INTO t VALUES (2)")
        with engine.connect() as conn:
            after = conn.execute(sa.text("SELECT inet_server_port()")).scalar()
            rows = conn.execute(sa.text("SELECT id FROM t ORDER BY id")).scalars().all()
    finally:
        engine.dispose()

    assert [(1,)] == streaming
    assert (pair.primary.port, pair.standby.port) == (before, after)
    assert [1, 2] == rows
    assert pair.setup_seconds is not None


def test_replication_pair_fence_refuses_writes_and_url_skips_it(pair):
    """A fenced primary refuses writes; target_session_attrs=read-write then finds no server until promotion."""
    pair.fence_primary()
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        pair.primary.execute("CREATE TABLE t (id int)")
    engine = sa.create_engine(pair.multihost_url(), poolclass=sa.NullPool)
    try:
        with pytest.raises(sa.exc.OperationalError):
            with engine.connect():
                pass
        pair.promote()
        with engine.connect() as conn:
            port = conn.execute(sa.text("SELECT inet_server_port()")).scalar()
    finally:
        engine.dispose()

    assert pair.standby.port == port


def test_replication_pair_teardown_removes_everything():
    """teardown() stops both servers and deletes their files, idempotently."""
    with replication_pair() as pair:
        ports = (pair.primary.port, pair.standby.port)
        base = pair.base
    pair.teardown()

    assert not base.exists()
    for port in ports:
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(f"host=127.0.0.1 port={port} dbname=test user=postgres connect_timeout=2")


# -- PgBouncer --------------------------------------------------------------------------------


def test_pgbouncer_multiplexes_clients_onto_a_small_pool(postgres_url):
    """Twelve clients in transactions through PgBouncer never use more than default_pool_size servers."""
    with pgbouncer_for(postgres_url, default_pool_size=3) as bouncer:
        pids: set[int] = set()
        lock = threading.Lock()
        errors: list[BaseException] = []

        def client() -> None:
            try:
                with psycopg.connect(bouncer.conninfo(), prepare_threshold=None) as conn:
                    for _ in range(5):
                        with conn.transaction():
                            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
                            conn.execute("SELECT pg_sleep(0.01)")
                        with lock:
                            pids.add(pid)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=client) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        pools = {row["database"]: row["pool_mode"] for row in bouncer.show("POOLS")}

    assert [] == errors
    assert 1 <= len(pids) <= 3
    assert "transaction" == pools["test"]


def test_pgbouncer_stop_releases_its_port(postgres_url):
    """stop() ends the process and removes its files."""
    with pgbouncer_for(postgres_url) as bouncer:
        port, directory = bouncer.port, bouncer.dir
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"host=127.0.0.1 port={port} dbname=test user=postgres connect_timeout=2")

    assert not directory.exists()
