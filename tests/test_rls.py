"""
Row-level security on the real PostgreSQL server, through a non-superuser role.

The module creates a uniquely named login role and table with an RLS policy that reads
``current_setting('txpolicy.user_id', true)``, and drops both at the end. Superusers and table
owners bypass RLS, so every database under test connects as that role.
"""

from __future__ import annotations

import concurrent.futures
import random
import re
import threading
import uuid
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa

import txpolicy
from txpolicy import AsyncDatabase, Database, UserContext, user_context

from .fix_db import url_for_driver

USERS = [f"user{i}" for i in range(12)]
ROWS_PER_USER = 3


@pytest.fixture(scope="module")
def rls(postgres_url):
    """(role URL, table name): a fresh role and an RLS-protected table seeded for USERS."""
    suffix = uuid.uuid4().hex[:10]
    role, table = f"txp_rls_{suffix}", f"t_rls_{suffix}"
    admin = sa.create_engine(postgres_url)
    with admin.begin() as connection:
        for sql in (
            f"CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS",
            f"CREATE TABLE {table} (id serial PRIMARY KEY, owner text NOT NULL, "
            f"tenant text, body text)",
            f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
            f"CREATE POLICY own_rows ON {table} "
            f"USING (owner = current_setting('txpolicy.user_id', true)) "
            f"WITH CHECK (owner = current_setting('txpolicy.user_id', true))",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {role}",
            f"GRANT USAGE ON SEQUENCE {table}_id_seq TO {role}",
        ):
            connection.execute(sa.text(sql))
        connection.execute(
            sa.text(f"INSERT INTO {table} (owner, body) VALUES (:owner, :body)"),
            [{"owner": u, "body": f"{u}-{i}"} for u in USERS for i in range(ROWS_PER_USER)],
        )
    url = sa.make_url(postgres_url).set(username=role, password=None)
    yield url.render_as_string(hide_password=False), table
    with admin.begin() as connection:
        connection.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"),
            {"r": role},
        )
        connection.execute(sa.text(f"DROP TABLE {table}"))
        connection.execute(sa.text(f"DROP ROLE {role}"))
    admin.dispose()


@pytest.fixture
def db(rls):
    url, _ = rls
    database = Database(url, pool_size=4, max_overflow=0)
    yield database
    database.close()


def owners(session, table: str) -> list[str]:
    return session.execute(sa.text(f"SELECT owner FROM {table} WHERE body IS NOT NULL")).scalars().all()


def test_role_is_subject_to_rls(db, rls):
    """Sanity: the role is not a superuser and does not own the table."""
    _, table = rls
    with db.get_session() as session:
        superuser, owner = session.execute(
            sa.text(
                "SELECT rolsuper OR rolbypassrls, "
                "(SELECT tableowner FROM pg_tables WHERE tablename = :t) = current_user "
                "FROM pg_roles WHERE rolname = current_user"
            ),
            {"t": table},
        ).one()

    assert (False, False) == (superuser, owner)


def test_context_selects_the_users_rows(db, rls):
    """With a context, the policy shows that user's rows; without one, none."""
    _, table = rls
    with db.get_session(user_context=UserContext("user3")) as session:
        mine = owners(session, table)
    with db.get_session() as session:
        nobody = owners(session, table)

    assert ["user3"] * ROWS_PER_USER == mine
    assert [] == nobody


def test_write_for_another_owner_is_refused(db, rls):
    """WITH CHECK refuses inserting, or moving a row, to another owner: PermissionError."""
    _, table = rls
    with pytest.raises(txpolicy.PermissionError) as inserted:
        with db.get_session(user_context=UserContext("user1")) as session:
            session.execute(
                sa.text(f"INSERT INTO {table} (owner, body) VALUES ('user2', NULL)")
            )
    with pytest.raises(txpolicy.PermissionError):
        with db.get_session(user_context=UserContext("user1")) as session:
            session.execute(sa.text(f"UPDATE {table} SET owner = 'user2' WHERE owner = 'user1'"))
    with db.get_session(user_context=UserContext("user2")) as session:
        theirs = owners(session, table)

    assert "42501" == inserted.value.sqlstate
    assert ["user2"] * ROWS_PER_USER == theirs


def test_pooled_connection_forgets_the_context(rls):
    """pool_size=1: after user A's transaction, the same connection without a context sees ''."""
    url, table = rls
    query = sa.text("SELECT current_setting('txpolicy.user_id', true), pg_backend_pid()")
    with Database(url, pool_size=1, max_overflow=0) as database:
        with database.get_session(user_context=UserContext("user5")) as session:
            inside, pid = session.execute(query).one()
        with database.get_session() as session:
            after, pid_after = session.execute(query).one()
            visible = owners(session, table)
        engine = database._adapter("primary").engine
        with engine.connect() as connection:
            raw, pid_raw = connection.execute(query).one()

    assert "user5" == inside
    assert (pid, pid) == (pid_after, pid_raw)
    assert ("", "", []) == (after, raw or "", visible)


def test_stray_session_setting_cannot_leak_in(rls):
    """A session-level SET left on a pooled connection is overridden inside every transaction."""
    url, table = rls
    with Database(url, pool_size=1, max_overflow=0) as database:
        engine = database._adapter("primary").engine
        with engine.connect() as connection:
            connection.execute(sa.text("SET txpolicy.user_id = 'user7'"))
            connection.commit()
        with database.get_session() as session:
            visible = owners(session, table)

    assert [] == visible


def test_savepoint_rollback_keeps_the_users_context(db, rls):
    """A failed SAVEPOINT inside user A's transaction leaves A's context (and rows) in force."""
    _, table = rls
    with db.get_session(user_context=UserContext("user4")) as session:
        with pytest.raises(sa.exc.DBAPIError):
            with session.begin_nested():
                session.execute(sa.text("SELECT set_config('txpolicy.user_id', 'user9', true)"))
                session.execute(sa.text("SELECT 1 / 0"))
        setting = session.execute(sa.text("SELECT current_setting('txpolicy.user_id', true)"))
        setting = setting.scalar_one()
        visible = owners(session, table)

    assert "user4" == setting
    assert ["user4"] * ROWS_PER_USER == visible


def check_user(session, table: str, user: str, rng: random.Random) -> int:
    """Read as *user*; return how many rows of other users were visible (must be 0)."""
    rows = owners(session, table)
    if rng.random() < 0.3:
        session.execute(
            sa.text(f"INSERT INTO {table} (owner, body) VALUES (:o, NULL)"), {"o": user}
        )
    return sum(owner != user for owner in rows) + (len(rows) != ROWS_PER_USER)


def test_thread_pool_never_reads_other_users(db, rls):
    """8 threads, 200 transactions for random users: no foreign row read, foreign writes refused."""
    _, table = rls
    leaks = []
    refused = []
    lock = threading.Lock()

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(25):
            user = rng.choice(USERS)
            with user_context(UserContext(user)), db.get_session(operation_type="t") as session:
                leaked = check_user(session, table, user, rng)
            other = rng.choice([u for u in USERS if u != user])
            try:
                with db.get_session(user_context=UserContext(user)) as session:
                    session.execute(
                        sa.text(f"INSERT INTO {table} (owner, body) VALUES (:o, 'x')"),
                        {"o": other},
                    )
            except txpolicy.PermissionError:
                with lock:
                    refused.append(user)
            with lock:
                leaks.append(leaked)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    stats = db.stats()

    assert [0] * 200 == leaks
    assert 200 == len(refused)
    assert (400, 400, 0) == (
        stats.total_sessions_created,
        stats.sessions_cleaned_up,
        stats.active_sessions_count,
    )


@pytest.mark.anyio
@pytest.mark.parametrize("driver", ["postgresql+psycopg", "postgresql+asyncpg"])
async def test_concurrent_tasks_never_read_other_users(rls, driver):
    """
    200 asyncio tasks for random users share 8 connections: no task ever sees a foreign row
    (read through a decorated function), and every write for another owner is refused.
    """
    url, table = rls
    database = AsyncDatabase(url_for_driver(url, driver), pool_size=8, max_overflow=0)
    rng = random.Random(4)
    leaks = []
    refused = []

    @database.transactional(read_only=True)
    async def read_rows(session):
        query = sa.text(f"SELECT owner FROM {table} WHERE body IS NOT NULL")
        rows = (await session.execute(query)).scalars().all()
        await anyio.sleep(0)  # let the other tasks interleave mid-transaction
        again = (await session.execute(sa.text(f"SELECT owner FROM {table}"))).scalars().all()
        return rows, again

    async def task(user: str, other: str) -> None:
        with user_context(UserContext(user)):
            rows, again = await read_rows()
            leaks.append(sum(o != user for o in [*rows, *again]) + (len(rows) != 3))
            try:
                async with database.get_session() as session:
                    await session.execute(
                        sa.text(f"INSERT INTO {table} (owner, body) VALUES (:o, 'x')"),
                        {"o": other},
                    )
            except txpolicy.PermissionError:
                refused.append(user)

    try:
        with anyio.fail_after(90):
            async with anyio.create_task_group() as tg:
                for _ in range(200):
                    user, other = rng.sample(USERS, 2)
                    tg.start_soon(task, user, other)
        stats = database.stats()
    finally:
        await database.aclose()

    assert [0] * 200 == leaks
    assert 200 == len(refused)
    assert (400, 400, 0) == (
        stats.total_sessions_created,
        stats.sessions_cleaned_up,
        stats.active_sessions_count,
    )


def test_require_user_context_fails_closed(rls):
    """require_user_context=True: no bound context, no transaction; with one, the user's rows."""
    url, table = rls
    with Database(url, pool_size=1, max_overflow=0, require_user_context=True) as database:
        with pytest.raises(txpolicy.ContextIsolationError):
            with database.get_session():
                pass
        with user_context(UserContext("user0")), database.get_session() as session:
            visible = owners(session, table)

    assert ["user0"] * ROWS_PER_USER == visible


def test_values_are_bind_parameters(db, rls):
    """An id full of quotes reaches PostgreSQL as data and matches no row."""
    _, table = rls
    nasty = "x' OR '1'='1"
    with db.get_session(user_context=UserContext(nasty, tenant_id="t'; --")) as session:
        seen = session.execute(
            sa.text(
                "SELECT current_setting('txpolicy.user_id', true), "
                "current_setting('txpolicy.tenant_id', true)"
            )
        ).one()
        visible = owners(session, table)

    assert (nasty, "t'; --") == tuple(seen)
    assert [] == visible


SETTING = sa.text("SELECT current_setting('txpolicy.user_id', true)")


def test_failed_savepoint_scope_leaves_the_context_in_force(db, rls):
    """
    A nested scope that fails inside user A's transaction is rolled back to its savepoint;
    A's context is set again and stays in force for the rest of the transaction.
    """
    _, table = rls
    engine = db._adapter("primary").engine
    executed = []

    def record(conn, cursor, statement, parameters, context, executemany):
        executed.append(statement)

    @db.transactional(propagation="nested")
    def failing(session):
        session.execute(sa.text("SELECT set_config('txpolicy.user_id', 'user9', true)"))
        session.execute(sa.text("SELECT 1 / 0"))

    @db.transactional(user_context=UserContext("user4"))
    def outer(session):
        sa.event.listen(engine, "before_cursor_execute", record)
        try:
            failing()
        except txpolicy.DataError:
            pass
        finally:
            sa.event.remove(engine, "before_cursor_execute", record)
        return session.execute(SETTING).scalar_one(), owners(session, table)

    setting, visible = outer()
    after_rollback = executed[executed.index("SELECT 1 / 0") + 1 :]

    assert "user4" == setting
    assert ["user4"] * ROWS_PER_USER == visible
    assert any("set_config" in sql for sql in after_rollback[1:])  # [0] is ROLLBACK TO SAVEPOINT


def test_retried_transaction_reapplies_the_context(db, rls, postgres_url):
    """A real serialization failure retries the call; the new attempt runs for the same user."""
    url, table = rls
    admin = sa.create_engine(postgres_url)
    seen = []
    policy = txpolicy.RetryPolicy(wait_initial=0.001, wait_max=0.002)
    row = sa.text(f"SELECT id FROM {table} WHERE body = 'user6-0'")

    @db.transactional(isolation_level="REPEATABLE READ", policy=policy)
    def touch(session):
        seen.append(session.execute(SETTING).scalar_one())  # the snapshot is taken here
        (row_id,) = session.execute(row).one()
        if len(seen) == 1:
            with admin.begin() as connection:
                connection.execute(
                    sa.text(f"UPDATE {table} SET body = body WHERE id = :i"), {"i": row_id}
                )
        session.execute(sa.text(f"UPDATE {table} SET body = body WHERE id = :i"), {"i": row_id})

    try:
        with user_context(UserContext("user6")):
            touch()
    finally:
        admin.dispose()
    stats = db.stats()

    assert ["user6", "user6"] == seen
    assert 1 == stats.retries_by_category[txpolicy.ErrorCategory.SERIALIZATION]
    assert (2, 2, 0) == (
        stats.total_sessions_created,
        stats.sessions_cleaned_up,
        stats.active_sessions_count,
    )


def test_violation_raises_before_the_body_and_is_counted(db, rls):
    """Joining another user's transaction raises before the inner body; nothing is written."""
    _, table = rls
    ran = []

    @db.transactional(user_context=UserContext("user2"))
    def write_as_user2(session):
        ran.append(1)
        session.execute(sa.text(f"INSERT INTO {table} (owner, body) VALUES ('user2', NULL)"))

    @db.transactional(user_context=UserContext("user1"))
    def as_user1(session):
        write_as_user2()

    count = sa.text(f"SELECT count(*) FROM {table}")
    with db.get_session(user_context=UserContext("user2")) as session:
        before = session.execute(count).scalar_one()
    with pytest.raises(txpolicy.ContextIsolationError):
        as_user1()
    with db.get_session(user_context=UserContext("user2")) as session:
        after = session.execute(count).scalar_one()

    assert [] == ran
    assert before == after
    assert 1 == db.stats().context_isolation_violations


def test_get_session_for_another_user_sees_only_that_users_rows(db, rls):
    """get_session(user_context=B) inside A's transaction runs as B; A's transaction stays A."""
    _, table = rls

    @db.transactional(user_context=UserContext("user7"))
    def as_user7(session):
        with db.get_session(user_context=UserContext("user8")) as other:
            theirs = owners(other, table)
        return owners(session, table), theirs

    mine, theirs = as_user7()

    assert (["user7"] * ROWS_PER_USER, ["user8"] * ROWS_PER_USER) == (mine, theirs)
    assert 0 == db.stats().context_isolation_violations


def test_scope_context_is_bound_for_its_body(db, rls):
    """The scope's user_context= is bound for its body: a get_session inside runs as that user."""
    _, table = rls

    @db.transactional(user_context=UserContext("user3"))
    def as_user3(session):
        with db.get_session() as inner:
            return txpolicy._context.current_user_context(), owners(inner, table)

    bound, visible = as_user3()

    assert UserContext("user3") == bound
    assert ["user3"] * ROWS_PER_USER == visible


@pytest.mark.anyio
async def test_async_retry_reapplies_the_context(rls, postgres_url):
    """AsyncDatabase: a real serialization failure is retried for the same user."""
    url, table = rls
    database = AsyncDatabase(url_for_driver(url, "postgresql+psycopg"), pool_size=2)
    admin = sa.create_engine(postgres_url)
    seen = []
    policy = txpolicy.RetryPolicy(wait_initial=0.001, wait_max=0.002)

    @database.transactional(isolation_level="REPEATABLE READ", policy=policy)
    async def touch(session):
        seen.append((await session.execute(SETTING)).scalar_one())
        row = sa.text(f"SELECT id FROM {table} WHERE body = 'user5-1'")
        (row_id,) = (await session.execute(row)).one()
        if len(seen) == 1:
            with admin.begin() as connection:
                connection.execute(
                    sa.text(f"UPDATE {table} SET body = body WHERE id = :i"), {"i": row_id}
                )
        await session.execute(
            sa.text(f"UPDATE {table} SET body = body WHERE id = :i"), {"i": row_id}
        )

    try:
        with user_context(UserContext("user5")):
            await touch()
        stats = database.stats()
    finally:
        await database.aclose()
        admin.dispose()

    assert ["user5", "user5"] == seen
    assert 1 == stats.retries_by_category[txpolicy.ErrorCategory.SERIALIZATION]
    assert (2, 2, 0) == (
        stats.total_sessions_created,
        stats.sessions_cleaned_up,
        stats.active_sessions_count,
    )


def _blocks(language: str) -> list[str]:
    text = (Path(__file__).parent.parent / "docs" / "multitenant.md").read_text()
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_multitenant_page_runs_as_written(postgres_url):
    """
    docs/multitenant.md: its SQL and Python blocks run in order against the real server.

    Only names change: the role gets a unique name, and everything lives in a schema of its
    own (through the connection's search_path), so the page's ``orders`` table is never shared.
    """
    suffix = uuid.uuid4().hex[:10]
    role, schema = f"shop_app_{suffix}", f"s_{suffix}"
    admin = sa.create_engine(postgres_url)
    (sql,) = _blocks("sql")
    python = _blocks("python")
    url = sa.make_url(postgres_url).set(
        drivername="postgresql", username=role, password=None, query={"options": f"-csearch_path={schema}"}
    )
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
        connection.execute(sa.text(f"SET LOCAL search_path TO {schema}"))
        connection.exec_driver_sql(sql.replace("shop_app", role))
        connection.execute(sa.text(f"GRANT USAGE ON SCHEMA {schema} TO {role}"))
    namespace: dict[str, object] = {"__name__": "__docs__"}
    try:
        for number, block in enumerate(python):
            block = block.replace(
                '"postgresql://shop_app@localhost/shop"',
                repr(url.render_as_string(hide_password=False)),
            )
            exec(compile(block, f"multitenant.md[{number}]", "exec"), namespace)
    finally:
        with admin.begin() as connection:
            connection.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"),
                {"r": role},
            )
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
            connection.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()

    assert len(python) >= 5
    assert namespace["db"]._closed
