"""
txpolicy through PgBouncer in transaction pooling mode (Debian's ``pgbouncer``, started here).

Many clients share a pool of ``default_pool_size = 4`` server connections, and each
transaction may run on a different one. What txpolicy relies on is transaction-scoped, so it
holds: the contended workload (retries included), the row-level-security user context
(``set_config(..., true)`` at the start of every attempt) and the per-transaction timeouts
(``SET LOCAL``). What is session-scoped does not: a plain ``SET`` stays on whichever server
connection ran it (lost for its client, leaked to the next client), and psycopg's automatic
prepared statements are missing on the next server connection — the last two tests show both,
which is why the engines here use ``prepare_threshold=None``.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator

import anyio
import psycopg
import psycopg.errors
import pytest
import sqlalchemy as sa

import txpolicy
from tests.harness import PgBouncer, pgbouncer_for
from tests.harness.workload import Bank, Outcomes, run_threads
from txpolicy import Database, ErrorCategory, RetryPolicy, UserContext, user_context

pytestmark = pytest.mark.postgres

POOL_SIZE = 4
POLICY = RetryPolicy(attempts=30, wait_initial=0.005, wait_max=0.1, deadline=30)
# psycopg prepares a query after 5 executions; the prepared statement lives on one server
# connection, which transaction pooling does not keep (PgBouncer < 1.21 cannot track them).
NO_PREPARE = {"connect_args": {"prepare_threshold": None}}
USERS = [f"user{i}" for i in range(8)]


@pytest.fixture(scope="module")
def rls(postgres_url) -> Iterator[tuple[str, str]]:
    """(role, table): a login role subject to an RLS policy on the user context, and its table."""
    suffix = uuid.uuid4().hex[:10]
    role, table = f"txp_pgb_{suffix}", f"t_pgb_rls_{suffix}"
    admin = sa.create_engine(postgres_url, poolclass=sa.NullPool)
    with admin.begin() as conn:
        for sql in (
            f"CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS",
            f"CREATE TABLE {table} (id serial PRIMARY KEY, owner text NOT NULL, body text)",
            f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
            (
                f"CREATE POLICY own_rows ON {table} "
                "USING (owner = current_setting('txpolicy.user_id', true)) "
                "WITH CHECK (owner = current_setting('txpolicy.user_id', true))"
            ),
            f"GRANT SELECT, INSERT ON {table} TO {role}",
            f"GRANT USAGE ON SEQUENCE {table}_id_seq TO {role}",
        ):
            conn.execute(sa.text(sql))
    yield role, table
    with admin.begin() as conn:
        conn.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"), {"r": role}
        )
        conn.execute(sa.text(f"DROP TABLE {table}"))
        conn.execute(sa.text(f"DROP ROLE {role}"))
    admin.dispose()


@pytest.fixture(scope="module")
def bouncer(postgres_url, rls) -> Iterator[PgBouncer]:
    """PgBouncer, transaction pooling, 4 server connections per (database, user)."""
    role, _ = rls
    with pgbouncer_for(postgres_url, default_pool_size=POOL_SIZE, users=("postgres", role)) as b:
        yield b


@pytest.fixture
def db(bouncer) -> Iterator[Database]:
    """A Database of 16 client connections, all through PgBouncer."""
    database = Database(bouncer.url(), pool_size=16, max_overflow=0, policy=POLICY, engine_options=NO_PREPARE)
    yield database
    database.close()


def _report(record_property, name: str, value: object) -> None:
    """Make a figure visible with -s and in the junit XML."""
    print(f"[pgbouncer] {name}: {value}")
    record_property(name, value)


class ServerSampler:
    """Samples how many server connections PgBouncer holds, every 20 ms, until stopped."""

    def __init__(self, bouncer: PgBouncer) -> None:
        self.bouncer, self.samples = bouncer, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="pgbouncer-sampler")

    def _run(self) -> None:
        while not self.stop.wait(0.02):
            self.samples.append(self.bouncer.server_connections())

    def __enter__(self) -> ServerSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(10)


def test_contended_workload_through_transaction_pooling(db, bouncer, pg_engine, record_property):
    """16 clients, 4 server connections, 8 hot accounts, SERIALIZABLE: every transfer commits exactly once."""
    bank = Bank(pg_engine, accounts=8)
    try:
        transfer = txpolicy.transactional(db, isolation_level="SERIALIZABLE")(bank.transfer)
        outcomes = Outcomes()

        def worker(index: int) -> None:
            rng = random.Random(index)
            for _ in range(10):
                transfer_id, src, dst, amount = bank.new_transfer(rng)
                try:
                    transfer(transfer_id, src, dst, amount)
                    outcomes.record(transfer_id, None)
                except Exception as exc:
                    outcomes.record(transfer_id, exc)

        with ServerSampler(bouncer) as sampler:
            run_threads(worker, threads=16)
        audit = bank.audit(outcomes)
        stats = db.stats()
    finally:
        bank.drop()
    retries = {c.value: n for c, n in stats.retries_by_category.items() if n}
    _report(record_property, "outcomes", {"ok": len(outcomes.ok), "failed": len(outcomes.failed)})
    _report(record_property, "retries", retries)
    _report(record_property, "max_server_connections", max(sampler.samples, default=0))

    assert audit.holds, audit
    assert (160, {}) == (len(outcomes.ok), outcomes.failed)
    assert sum(retries.values()) >= 1  # the contention was real
    assert max(sampler.samples) <= POOL_SIZE
    assert (0, 0) == (stats.active_sessions_count, stats.engines["primary"].checked_out)


def test_user_context_and_rls_hold_through_transaction_pooling(bouncer, rls, record_property):
    """Each transaction sees exactly its own user's context and rows, even with leaked session settings around."""
    role, table = rls
    db = Database(bouncer.url(user=role), pool_size=12, max_overflow=0, policy=POLICY, engine_options=NO_PREPARE)
    violations: list[tuple[str, object]] = []
    checks = 0
    lock = threading.Lock()
    probe = sa.text(f"SELECT current_setting('txpolicy.user_id', true), array_agg(DISTINCT owner) FROM {table}")

    @txpolicy.transactional(db)
    def add_and_look(session, user):
        session.execute(sa.text(f"INSERT INTO {table} (owner, body) VALUES (:u, 'x')"), {"u": user})
        return session.execute(probe).one()

    @txpolicy.transactional(db)
    def look_without_context(session):
        return session.execute(probe).one()

    def poison() -> None:
        # A session-level setting, on whichever server connection PgBouncer picks: it stays there.
        with psycopg.connect(bouncer.conninfo(), user=role, autocommit=True, prepare_threshold=None) as conn:
            conn.execute("SELECT set_config('txpolicy.user_id', 'mallory', false)")

    def worker(index: int) -> None:
        nonlocal checks
        user = USERS[index % len(USERS)]
        for step in range(12):
            if step % 4 == 0:
                poison()
            with user_context(UserContext(user)):
                setting, owners = add_and_look(user)
            anonymous = look_without_context()
            with lock:
                checks += 2
                if (setting, owners) != (user, [user]):
                    violations.append((user, (setting, owners)))
                if anonymous != ("", None):
                    violations.append(("<none>", anonymous))

    try:
        run_threads(worker, threads=12)
        stats = db.stats()
    finally:
        db.close()
    _report(record_property, "user_context_checks", checks)

    assert [] == violations
    assert 12 * 12 * 2 == checks
    assert (0, 0) == (stats.active_sessions_count, stats.context_isolation_violations)


def test_per_transaction_timeouts_hold_through_transaction_pooling(db, bouncer, pg_engine, table_name, record_property):
    """SET LOCAL timeouts apply to every statement of their transaction and never leak to the next one."""
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table_name} (id int PRIMARY KEY)"))
        conn.execute(sa.text(f"INSERT INTO {table_name} VALUES (1)"))
    show = sa.text("SELECT current_setting('statement_timeout'), current_setting('lock_timeout')")
    timed_out = []
    seen_inside: list[tuple[str, str]] = []
    seen_after: list[tuple[str, str]] = []
    lock = threading.Lock()

    @txpolicy.transactional(db, statement_timeout=0.25, lock_timeout=0.2)
    def slow(session):
        first = session.execute(show).one()
        second = session.execute(show).one()
        with lock:
            seen_inside.extend([tuple(first), tuple(second)])
        session.execute(sa.text("SELECT pg_sleep(3)"))

    @txpolicy.transactional(db)
    def plain(session):
        session.execute(sa.text("SELECT pg_sleep(0.01)"))
        return tuple(session.execute(show).one())

    def worker(index: int) -> None:
        for _ in range(3):
            try:
                slow()
            except txpolicy.TimeoutError as exc:
                with lock:
                    timed_out.append(exc.category)
            result = plain()
            with lock:
                seen_after.append(result)

    holder = pg_engine.connect()
    try:
        run_threads(worker, threads=8)
        # A row lock held outside PgBouncer: lock_timeout (SET LOCAL) ends the wait.
        holder.execute(sa.text(f"SELECT * FROM {table_name} WHERE id = 1 FOR UPDATE"))
        blocked = txpolicy.transactional(db, lock_timeout=0.1, policy=RetryPolicy(attempts=2, wait_initial=0.01, wait_max=0.01))(
            lambda session: session.execute(sa.text(f"UPDATE {table_name} SET id = 2 WHERE id = 1"))
        )
        with pytest.raises(txpolicy.LockTimeoutError) as info:
            blocked()
        holder.rollback()
    finally:
        holder.close()
        with pg_engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table_name}"))
    stats = db.stats()
    _report(record_property, "statement_timeouts", len(timed_out))

    assert [ErrorCategory.STATEMENT_TIMEOUT] * 24 == timed_out
    assert {("250ms", "200ms")} == set(seen_inside)
    assert 48 == len(seen_inside)
    assert {("0", "0")} == set(seen_after)
    assert (2, "55P03") == (info.value.attempts, info.value.sqlstate)
    assert (0, 0) == (stats.active_sessions_count, stats.engines["primary"].checked_out)


@pytest.fixture
def two_server_bouncer(postgres_url) -> Iterator[PgBouncer]:
    """A PgBouncer of its own with two server connections, so which client gets which is known."""
    with pgbouncer_for(postgres_url, default_pool_size=2) as b:
        yield b


def test_session_level_set_does_not_survive_transaction_pooling(two_server_bouncer):
    """A plain SET stays on the server connection that ran it: lost for its client, leaked to another."""
    bouncer = two_server_bouncer
    with psycopg.connect(bouncer.conninfo(), autocommit=True) as a, psycopg.connect(
        bouncer.conninfo(), autocommit=True
    ) as b:
        a.execute("SET statement_timeout = '1234ms'")
        with b.transaction():  # b gets the idle server connection a just used...
            leaked = b.execute("SHOW statement_timeout").fetchone()[0]
            lost = a.execute("SHOW statement_timeout").fetchone()[0]  # ...so a gets a new one

    assert ("1234ms", "0") == (leaked, lost)


def test_automatic_prepared_statements_break_through_transaction_pooling(two_server_bouncer):
    """psycopg's prepared statements live on one server connection; the next may not have them (26000)."""
    bouncer = two_server_bouncer
    with psycopg.connect(bouncer.conninfo(), autocommit=True) as a, psycopg.connect(
        bouncer.conninfo(), autocommit=True
    ) as b:
        for i in range(6):  # prepare_threshold (5) reached: prepared on a's server connection
            a.execute("SELECT %s::int + 1", (i,))
        with b.transaction():  # b holds that server connection, a is given another one
            b.execute("SELECT 1")
            with pytest.raises(psycopg.errors.InvalidSqlStatementName) as info:
                a.execute("SELECT %s::int + 1", (9,))
    classified = txpolicy.classify_error(info.value)

    assert ("26000", ErrorCategory.SCHEMA, False) == (
        info.value.sqlstate,
        classified.category,
        txpolicy.is_retryable_error(info.value),
    )


@pytest.mark.anyio
async def test_asyncpg_through_transaction_pooling(bouncer, pg_engine, record_property):
    """asyncpg works through transaction pooling once both statement caches are off and names are unique."""
    url = sa.make_url(bouncer.url("postgresql+asyncpg")).difference_update_query(["sslmode"])
    # SQLAlchemy's cache of prepared statements, asyncpg's own, and names that cannot collide.
    url = url.update_query_dict({"ssl": "disable", "prepared_statement_cache_size": "0"})
    options = {
        "connect_args": {
            "statement_cache_size": 0,
            "prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4().hex}__",
        }
    }
    bank = Bank(pg_engine, accounts=8)
    db = txpolicy.AsyncDatabase(url, pool_size=8, max_overflow=0, policy=POLICY, engine_options=options)
    outcomes = Outcomes()
    seen: list[str] = []

    @txpolicy.transactional(db)
    async def transfer(session, transfer_id, src, dst, amount, user):
        await session.run_sync(lambda s: bank.transfer(s, transfer_id, src, dst, amount))
        row = await session.execute(sa.text("SELECT current_setting('txpolicy.user_id', true)"))
        seen.append(row.scalar() == user)

    async def worker(index: int) -> None:
        rng = random.Random(index)
        for _ in range(10):
            transfer_id, src, dst, amount = bank.new_transfer(rng)
            try:
                with user_context(UserContext(f"user{index}")):
                    await transfer(transfer_id, src, dst, amount, f"user{index}")
                outcomes.record(transfer_id, None)
            except Exception as exc:
                outcomes.record(transfer_id, exc)

    try:
        async with anyio.create_task_group() as tg:
            for index in range(8):
                tg.start_soon(worker, index)
        stats = db.stats()
    finally:
        await db.aclose()
        audit = bank.audit(outcomes)
        bank.drop()
    _report(record_property, "asyncpg_outcomes", {"ok": len(outcomes.ok), "failed": len(outcomes.failed)})

    assert audit.holds, audit
    assert (80, {}) == (len(outcomes.ok), outcomes.failed)
    assert [] == [ok for ok in seen if not ok]  # every attempt saw its own user...
    assert len(seen) >= 80  # ...and every call made at least one
    assert (0, 0) == (stats.active_sessions_count, stats.engines["primary"].checked_out)
