"""inject_fault() on sync binds: psycopg, PyMySQL and sqlite3, against the real servers."""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
import types

import psycopg
import pymysql
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

import txpolicy
from txpolicy import ErrorCategory as C
from txpolicy.testing import FaultHandle, inject_fault, set_testing

# -- what each driver raises, per category (the canonical codes) --------------------------------

POSTGRES = [
    pytest.param(C.DEADLOCK, "40P01", id="deadlock"),
    pytest.param(C.SERIALIZATION, "40001", id="serialization"),
    pytest.param(C.LOCK_TIMEOUT, "55P03", id="lock_timeout"),
    pytest.param(C.CONNECTION, "57P01", id="connection"),
    pytest.param(C.READ_ONLY, "25006", id="read_only"),
    pytest.param(C.RESOURCE, "53300", id="resource"),
    pytest.param(C.STATEMENT_TIMEOUT, "57014", id="statement_timeout"),
    pytest.param(C.COMMIT_UNKNOWN, "40003", id="commit_unknown"),
    pytest.param(C.INTEGRITY, "23505", id="integrity"),
    pytest.param(C.DATA, "22P02", id="data"),
    pytest.param(C.PERMISSION, "42501", id="permission"),
    pytest.param(C.SCHEMA, "42P01", id="schema"),
    pytest.param(C.UNKNOWN, "XX000", id="unknown"),
]

E = pymysql.err
MYSQL = [
    pytest.param(C.DEADLOCK, E.OperationalError, 1213, id="deadlock"),
    pytest.param(C.SERIALIZATION, E.OperationalError, 1020, id="serialization"),
    pytest.param(C.LOCK_TIMEOUT, E.OperationalError, 1205, id="lock_timeout"),
    pytest.param(C.CONNECTION, E.OperationalError, 2006, id="connection"),
    pytest.param(C.READ_ONLY, E.OperationalError, 1290, id="read_only"),
    pytest.param(C.RESOURCE, E.OperationalError, 1040, id="resource"),
    pytest.param(C.STATEMENT_TIMEOUT, E.OperationalError, 1969, id="statement_timeout"),
    pytest.param(C.INTEGRITY, E.IntegrityError, 1062, id="integrity"),
    pytest.param(C.DATA, E.DataError, 1264, id="data"),
    pytest.param(C.PERMISSION, E.OperationalError, 1142, id="permission"),
    pytest.param(C.SCHEMA, E.ProgrammingError, 1146, id="schema"),
    pytest.param(C.UNKNOWN, E.OperationalError, 1105, id="unknown"),
]

SQLITE = [
    pytest.param(C.LOCK_TIMEOUT, sqlite3.OperationalError, 5, "SQLITE_BUSY", id="lock_timeout"),
    pytest.param(
        C.SERIALIZATION,
        sqlite3.OperationalError,
        517,
        "SQLITE_BUSY_SNAPSHOT",
        id="serialization",
        marks=pytest.mark.skipif(
            sys.version_info < (3, 11), reason="sqlite_errorcode exists from Python 3.11"
        ),
    ),
    pytest.param(
        C.INTEGRITY, sqlite3.IntegrityError, 2067, "SQLITE_CONSTRAINT_UNIQUE", id="integrity"
    ),
    pytest.param(C.DATA, sqlite3.DataError, 18, "SQLITE_TOOBIG", id="data"),
    pytest.param(C.SCHEMA, sqlite3.OperationalError, 1, "SQLITE_ERROR", id="schema"),
]

AT = pytest.mark.parametrize("at", ["statement", "commit"])


@pytest.fixture
def sqlite_engine(tmp_path):
    """A sqlite3 engine on a file, so that every connection sees the same data."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield engine
    engine.dispose()


@pytest.fixture(params=["postgresql", "mysql", "sqlite"])
def engine(request):
    """The same test on PostgreSQL (psycopg), MariaDB (PyMySQL) and SQLite (sqlite3)."""
    name = {"postgresql": "pg_engine", "mysql": "mysql_engine", "sqlite": "sqlite_engine"}
    return request.getfixturevalue(name[request.param])


@pytest.fixture
def table(engine, table_name):
    """A fresh table ``(id integer primary key)`` on *engine*, dropped after the test."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table_name} (id INTEGER PRIMARY KEY)"))
    yield table_name
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {table_name}"))


def fail_once(engine: sa.Engine, at: str) -> sa.exc.DBAPIError:
    """Run one statement and one COMMIT on *engine*; return the error that one of them raised."""
    with engine.connect() as conn:
        with pytest.raises(sa.exc.DBAPIError) as info:
            conn.execute(sa.text("SELECT 1"))
            if at == "commit":
                conn.commit()
    return info.value


def answer(engine: sa.Engine) -> int:
    """A statement whose result only the real server gives."""
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT 40 + 2")).scalar_one()


def count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def category_of(error: BaseException) -> C:
    return txpolicy.classify_error(error).category


# -- each driver, each category -------------------------------------------------------------------


@AT
@pytest.mark.parametrize(("category", "sqlstate"), POSTGRES)
def test_psycopg_raises_the_driver_class_with_the_sqlstate(pg_engine, category, sqlstate, at):
    """psycopg: .orig is the psycopg class of the SQLSTATE, sent by the server, and classifies back."""
    with inject_fault(pg_engine, category, at=at) as handle:
        error = fail_once(pg_engine, at)

    assert psycopg.errors.lookup(sqlstate) is type(error.orig)
    assert sqlstate == error.orig.sqlstate == error.orig.diag.sqlstate
    assert (category is C.CONNECTION) is error.connection_invalidated
    assert 1 == handle.fired
    assert category == category_of(error)
    assert 42 == answer(pg_engine)


@AT
@pytest.mark.parametrize(("category", "cls", "errno"), MYSQL)
def test_pymysql_raises_the_error_map_class_with_the_errno(mysql_engine, category, cls, errno, at):
    """PyMySQL: .orig has the class PyMySQL's error_map picks for the errno, and classifies back."""
    with inject_fault(mysql_engine, category, at=at) as handle:
        error = fail_once(mysql_engine, at)

    assert cls is type(error.orig)
    assert errno == error.orig.args[0]
    assert (category is C.CONNECTION) is error.connection_invalidated
    assert 1 == handle.fired
    assert category == category_of(error)
    assert 42 == answer(mysql_engine)


@AT
@pytest.mark.parametrize(("category", "cls", "code", "name"), SQLITE)
def test_sqlite3_raises_the_class_and_result_code(sqlite_engine, category, cls, code, name, at):
    """sqlite3: .orig has CPython's class for the result code and its sqlite_errorcode/name."""
    with inject_fault(sqlite_engine, category, at=at) as handle:
        error = fail_once(sqlite_engine, at)

    assert cls is type(error.orig)
    assert (code, name) == (error.orig.sqlite_errorcode, error.orig.sqlite_errorname)
    assert 1 == handle.fired
    assert category == category_of(error)
    assert 42 == answer(sqlite_engine)


@pytest.mark.parametrize(
    ("url_fixture", "category", "words"),
    [
        pytest.param("sqlite_engine", C.DEADLOCK, "deadlock", id="sqlite-deadlock"),
        pytest.param("sqlite_engine", C.CONNECTION, "connection", id="sqlite-connection"),
        pytest.param("sqlite_engine", C.COMMIT_UNKNOWN, "commit_unknown", id="sqlite-commit-unknown"),
        pytest.param("mysql_engine", C.COMMIT_UNKNOWN, "at='commit'", id="mysql-commit-unknown"),
    ],
)
def test_a_category_the_database_cannot_produce_is_refused(request, url_fixture, category, words):
    """Asking for an error the database never raises fails at once, naming what it can raise."""
    bind = request.getfixturevalue(url_fixture)

    with pytest.raises(ValueError, match="cannot produce") as info:
        inject_fault(bind, category)

    assert words in str(info.value)


# -- counting, removal, order ---------------------------------------------------------------------


def test_times_faults_then_the_real_server_answers(engine):
    """The first `times` statements fail; the next one runs on the real server."""
    handle = inject_fault(engine, C.LOCK_TIMEOUT, times=3)

    for expected_remaining in (2, 1, 0):
        with pytest.raises(sa.exc.OperationalError):
            answer(engine)
        assert expected_remaining == handle.remaining

    assert 42 == answer(engine)
    assert (3, 0, False) == (handle.fired, handle.remaining, handle.active)
    handle.remove()


def test_remove_stops_the_fault_and_is_idempotent(engine):
    """After remove(), statements run again; fired keeps its count; removing twice is harmless."""
    handle = inject_fault(engine, C.DATA, times=5)
    with pytest.raises(sa.exc.DBAPIError):
        answer(engine)

    handle.remove()
    handle.remove()

    assert 42 == answer(engine)
    assert (1, 0, False) == (handle.fired, handle.remaining, handle.active)


def test_the_context_manager_removes_the_fault(engine):
    """`with inject_fault(...)` removes the fault when the block ends, even on error."""
    with pytest.raises(ZeroDivisionError), inject_fault(engine, C.DATA, times=5) as handle:
        1 / 0  # noqa: B018

    assert 42 == answer(engine)
    assert 0 == handle.fired


def test_a_statement_fault_leaves_commits_alone_and_the_reverse(engine, table):
    """at='commit' does not touch statements, and at='statement' does not touch COMMIT."""
    with inject_fault(engine, C.LOCK_TIMEOUT, at="commit") as on_commit:
        with engine.connect() as conn:
            conn.execute(sa.text(f"INSERT INTO {table} (id) VALUES (1)"))
            with pytest.raises(sa.exc.DBAPIError):
                conn.commit()

    assert (1, 0) == (on_commit.fired, count(engine, table))

    with engine.connect() as conn:
        conn.execute(sa.text(f"INSERT INTO {table} (id) VALUES (1)"))
        with inject_fault(engine, C.LOCK_TIMEOUT, at="statement") as on_statement:
            conn.commit()

    assert (0, 1) == (on_statement.fired, count(engine, table))


def test_a_commit_fault_commits_nothing_and_the_next_commit_works(engine, table):
    """A failed COMMIT leaves nothing behind: not the row, not an open transaction in the pool."""
    with inject_fault(engine, C.LOCK_TIMEOUT, at="commit", times=2):
        for _ in range(2):
            with engine.connect() as conn:
                conn.execute(sa.text(f"INSERT INTO {table} (id) VALUES (1)"))
                with pytest.raises(sa.exc.DBAPIError):
                    conn.commit()
            assert 0 == count(engine, table)

        with engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {table} (id) VALUES (1)"))

    assert 1 == count(engine, table)


def test_faults_fire_in_the_order_they_were_injected(engine):
    """Two faults on one bind: the first injected is used up first."""
    first = inject_fault(engine, C.LOCK_TIMEOUT)
    second = inject_fault(engine, C.DATA)

    with pytest.raises(sa.exc.DBAPIError) as one:
        answer(engine)
    with pytest.raises(sa.exc.DBAPIError) as two:
        answer(engine)

    assert [C.LOCK_TIMEOUT, C.DATA] == [category_of(one.value), category_of(two.value)]
    assert 42 == answer(engine)
    first.remove()
    second.remove()


def test_the_statement_that_draws_the_fault_is_not_run(engine, table):
    """The failed INSERT never reached the table: the fault replaced it."""
    with engine.connect() as conn:
        with inject_fault(engine, C.LOCK_TIMEOUT):
            with pytest.raises(sa.exc.DBAPIError) as info:
                conn.execute(sa.text(f"INSERT INTO {table} (id) VALUES (1)"))
        conn.rollback()

    assert f"INSERT INTO {table} (id) VALUES (1)" == info.value.statement
    assert 0 == count(engine, table)


def test_first_connect_statements_never_draw_a_fault(postgres_url):
    """A fresh engine's dialect initialisation runs its own statements: the fault waits for ours."""
    engine = sa.create_engine(postgres_url)
    try:
        with inject_fault(engine, C.DEADLOCK) as handle, engine.connect() as conn:
            with pytest.raises(sa.exc.OperationalError) as info:
                conn.execute(sa.text("SELECT 40 + 2"))
        assert ("SELECT 40 + 2", 1) == (info.value.statement, handle.fired)
        assert engine.dialect.server_version_info is not None
    finally:
        engine.dispose()


def test_concurrent_statements_take_exactly_times_faults(pg_engine):
    """Threads racing for the last faults never take more than `times` between them."""
    times, threads, per_thread = 25, 4, 15
    handle = inject_fault(pg_engine, C.SERIALIZATION, times=times)
    failures: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(threads, timeout=30)

    def work():
        start.wait()
        failed = 0
        with pg_engine.connect() as conn:
            for _ in range(per_thread):
                try:
                    conn.execute(sa.text("SELECT 1"))
                except sa.exc.OperationalError:
                    failed += 1
                    conn.rollback()
        with lock:
            failures.append(failed)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert [False] * threads == [worker.is_alive() for worker in workers]
    assert (times, times) == (sum(failures), handle.fired)
    handle.remove()


# -- connection faults ----------------------------------------------------------------------------


@pytest.mark.parametrize("at", ["statement", "commit"])
@pytest.mark.parametrize("server", ["pg_engine", "mysql_engine"])
def test_a_connection_fault_invalidates_and_the_pool_reconnects(request, server, at):
    """SQLAlchemy sees a disconnect: the connection is invalidated, the next checkout reconnects."""
    engine = request.getfixturevalue(server)
    with engine.connect() as conn:
        with inject_fault(engine, C.CONNECTION, at=at):
            with pytest.raises(sa.exc.OperationalError) as info:
                conn.execute(sa.text("SELECT 1"))
                conn.commit()
        assert (True, True) == (info.value.connection_invalidated, conn.invalidated)

    assert 42 == answer(engine)


@pytest.mark.parametrize("server", ["pg_engine", "mysql_engine"])
def test_a_connection_lost_during_commit_commits_nothing(request, server, table_name):
    """The connection dies before COMMIT reaches the server: the transaction is rolled back."""
    engine = request.getfixturevalue(server)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table_name} (id INTEGER PRIMARY KEY)"))
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f"INSERT INTO {table_name} (id) VALUES (1)"))
            with inject_fault(engine, C.CONNECTION, at="commit"):
                with pytest.raises(sa.exc.OperationalError):
                    conn.commit()

        assert 0 == count(engine, table_name)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table_name}"))


# -- injected faults look like real ones --------------------------------------------------------


def comparable(error: sa.exc.DBAPIError) -> list[object]:
    """What a caller can observe of an error: wrapper, driver class, code, message, disconnect."""
    orig = error.orig
    if isinstance(orig, psycopg.Error):
        detail = (orig.sqlstate, orig.diag.severity_nonlocalized, orig.diag.message_primary)
    elif isinstance(orig, pymysql.err.Error):
        detail = (*orig.args, getattr(orig, "sqlstate", None))
    else:
        detail = (str(orig), orig.sqlite_errorcode, orig.sqlite_errorname)
    return [type(error), type(orig), *detail, error.connection_invalidated, category_of(error)]


def test_postgres_lock_timeout_looks_like_a_real_one(pg_engine, table_name):
    """A real lock_timeout expiry and an injected LOCK_TIMEOUT are indistinguishable to the caller."""
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table_name} (id INTEGER PRIMARY KEY)"))
        conn.execute(sa.text(f"INSERT INTO {table_name} VALUES (1)"))
    try:
        with pg_engine.connect() as holder, pg_engine.connect() as waiter:
            holder.execute(sa.text(f"SELECT * FROM {table_name} FOR UPDATE"))
            waiter.execute(sa.text("SET LOCAL lock_timeout = '50ms'"))
            with pytest.raises(sa.exc.OperationalError) as real:
                waiter.execute(sa.text(f"SELECT * FROM {table_name} FOR UPDATE"))
        with inject_fault(pg_engine, C.LOCK_TIMEOUT):
            injected = fail_once(pg_engine, "statement")

        assert comparable(real.value) == comparable(injected)
    finally:
        with pg_engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table_name}"))


def test_postgres_terminated_backend_looks_like_a_real_one(pg_engine):
    """pg_terminate_backend from another session and an injected CONNECTION look the same."""
    with pg_engine.connect() as victim, pg_engine.connect() as killer:
        pid = victim.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        assert killer.execute(sa.text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid}).scalar_one()
        with pytest.raises(sa.exc.OperationalError) as real:
            victim.execute(sa.text("SELECT 1"))
    with inject_fault(pg_engine, C.CONNECTION):
        injected = fail_once(pg_engine, "statement")

    assert comparable(real.value) == comparable(injected)


def test_mysql_lock_wait_timeout_looks_like_a_real_one(mysql_engine, table_name):
    """A real innodb_lock_wait_timeout expiry and an injected LOCK_TIMEOUT look the same."""
    with mysql_engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table_name} (id INTEGER PRIMARY KEY)"))
        conn.execute(sa.text(f"INSERT INTO {table_name} VALUES (1)"))
    try:
        with mysql_engine.connect() as holder, mysql_engine.connect() as waiter:
            holder.execute(sa.text(f"SELECT * FROM {table_name} FOR UPDATE"))
            waiter.execute(sa.text("SET SESSION innodb_lock_wait_timeout = 1"))
            with pytest.raises(sa.exc.OperationalError) as real:
                waiter.execute(sa.text(f"SELECT * FROM {table_name} FOR UPDATE"))
            waiter.invalidate()  # its session setting must not go back to the pool
        with inject_fault(mysql_engine, C.LOCK_TIMEOUT):
            injected = fail_once(mysql_engine, "statement")

        assert comparable(real.value) == comparable(injected)
    finally:
        with mysql_engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table_name}"))


def test_sqlite_database_is_locked_looks_like_a_real_one(tmp_path):
    """A real SQLITE_BUSY (another connection holds the write lock) and an injected one match."""
    path = tmp_path / "busy.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        holder.execute("BEGIN IMMEDIATE")
        with engine.connect() as conn:
            with pytest.raises(sa.exc.OperationalError) as real:
                conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        holder.execute("ROLLBACK")
        with inject_fault(engine, C.LOCK_TIMEOUT):
            injected = fail_once(engine, "statement")

        assert comparable(real.value) == comparable(injected)
    finally:
        holder.close()
        engine.dispose()


def test_sqlite_unique_violation_has_the_real_class_and_code(sqlite_engine, table_name):
    """A real UNIQUE violation and an injected INTEGRITY fault share class, code and name."""
    with sqlite_engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table_name} (name TEXT UNIQUE)"))
        conn.execute(sa.text(f"INSERT INTO {table_name} VALUES ('a')"))
    with sqlite_engine.connect() as conn:
        with pytest.raises(sa.exc.IntegrityError) as real:
            conn.execute(sa.text(f"INSERT INTO {table_name} VALUES ('a')"))
    with inject_fault(sqlite_engine, C.INTEGRITY):
        injected = fail_once(sqlite_engine, "statement")

    real_view, injected_view = comparable(real.value), comparable(injected)
    del real_view[2], injected_view[2]  # the message names the table and column

    assert real_view == injected_view


# -- binds ----------------------------------------------------------------------------------------


def test_a_sessionmaker_reaches_its_engine(pg_engine):
    """A fault on a sessionmaker fails the statements of its sessions."""
    factory = sessionmaker(pg_engine)

    with inject_fault(factory, C.SERIALIZATION) as handle, factory() as session:
        with pytest.raises(sa.exc.OperationalError):
            session.execute(sa.text("SELECT 1"))

    assert 1 == handle.fired


def test_a_sessionmaker_with_binds_reaches_every_engine(pg_engine, sqlite_engine):
    """binds= mappings count: one fault covers each engine, fired counted once per failure."""
    metadata = sa.MetaData()
    pg_table = sa.Table("pg_side", metadata, sa.Column("id", sa.Integer, primary_key=True))
    lite_table = sa.Table("lite_side", metadata, sa.Column("id", sa.Integer, primary_key=True))
    factory = sessionmaker(binds={pg_table: pg_engine, lite_table: sqlite_engine})

    with inject_fault(factory, C.DATA, times=2) as handle:
        with Session(pg_engine) as session:
            with pytest.raises(sa.exc.DataError):
                session.execute(sa.text("SELECT 1"))
        with Session(sqlite_engine) as session:
            with pytest.raises(sa.exc.DataError):
                session.execute(sa.text("SELECT 1"))

    assert 2 == handle.fired


def test_an_engine_with_execution_options_shares_the_fault(pg_engine):
    """engine.execution_options() makes a new Engine over the same dialect: the fault reaches it."""
    autocommit = pg_engine.execution_options(isolation_level="AUTOCOMMIT")

    with inject_fault(pg_engine, C.DEADLOCK) as handle:
        with pytest.raises(sa.exc.OperationalError):
            answer(autocommit)

    assert 1 == handle.fired


def test_a_database_reaches_every_engine(postgres_url, sqlite_engine):
    """A Database's faults cover all of its named engines."""
    db = txpolicy.Database({"primary": postgres_url, "lite": sqlite_engine})
    try:
        with inject_fault(db, C.LOCK_TIMEOUT, times=2) as handle:
            for name in ("primary", "lite"):
                with pytest.raises(txpolicy.LockTimeoutError):
                    with db.get_session(name) as session:
                        session.execute(sa.text("SELECT 1"))

        assert 2 == handle.fired
    finally:
        db.close()


# -- arguments ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        pytest.param({"category": "gremlins"}, ValueError, "unknown error category", id="category-unknown"),
        pytest.param({"category": 3}, TypeError, "ErrorCategory", id="category-int"),
        pytest.param({"category": None}, TypeError, "ErrorCategory", id="category-none"),
        pytest.param({"times": 0}, ValueError, "at least 1", id="times-zero"),
        pytest.param({"times": -2}, ValueError, "at least 1", id="times-negative"),
        pytest.param({"times": 1.5}, TypeError, "int", id="times-float"),
        pytest.param({"times": True}, TypeError, "int", id="times-bool"),
        pytest.param({"at": "rollback"}, ValueError, "'statement' or 'commit'", id="at-unknown"),
        pytest.param({"at": None}, TypeError, "'statement' or 'commit'", id="at-none"),
    ],
)
def test_bad_arguments_fail_at_once(sqlite_engine, kwargs, error, match):
    """Wrong arguments raise TypeError/ValueError when the fault is injected, and inject nothing."""
    arguments = {"category": C.LOCK_TIMEOUT, **kwargs}

    with pytest.raises(error, match=match):
        inject_fault(sqlite_engine, **arguments)

    assert 42 == answer(sqlite_engine)


def test_the_category_may_be_given_by_value(sqlite_engine):
    """The string value of a category is accepted and normalised to the enum member."""
    with inject_fault(sqlite_engine, "lock_timeout") as handle:
        assert C.LOCK_TIMEOUT is handle.category


@pytest.mark.parametrize(
    "bind",
    [
        pytest.param(42, id="int"),
        pytest.param("sqlite://", id="url"),
        pytest.param(object(), id="object"),
    ],
)
def test_an_unsupported_bind_is_a_type_error(bind):
    """Only engines, sessionmakers and databases are binds."""
    with pytest.raises(TypeError, match="needs an Engine"):
        inject_fault(bind, C.DEADLOCK)


def test_a_session_is_not_a_bind(sqlite_engine):
    """A Session is not a bind: faults belong to what makes sessions."""
    with Session(sqlite_engine) as session, pytest.raises(TypeError, match="Session"):
        inject_fault(session, C.DEADLOCK)


def test_a_sessionmaker_without_a_bind_is_refused():
    """There is nothing to inject into."""
    with pytest.raises(ValueError, match="no engine"):
        inject_fault(sessionmaker(), C.DEADLOCK)


def test_an_unsupported_driver_is_refused():
    """A driver txpolicy cannot inject into is named, with the list of supported ones."""
    module = types.ModuleType("pg8000")
    module.paramstyle = "format"
    module.__version__ = "1.31.0"
    module.Error = type("Error", (Exception,), {})
    engine = sa.create_engine("postgresql+pg8000://u@127.0.0.1/x", module=module)
    try:
        with pytest.raises(ValueError, match=r"postgresql\+pg8000.*postgresql\+psycopg"):
            inject_fault(engine, C.DEADLOCK)
    finally:
        engine.dispose()


def test_the_handle_describes_itself(sqlite_engine):
    """The handle exposes what it injects, and its repr says so."""
    with inject_fault(sqlite_engine, C.DATA, at="commit", times=2) as handle:
        assert isinstance(handle, FaultHandle)
        assert (C.DATA, "commit", 2, 0, 2) == (
            handle.category,
            handle.at,
            handle.times,
            handle.fired,
            handle.remaining,
        )
        assert "<FaultHandle DATA at='commit' fired=0/2>" == repr(handle)
    assert "<FaultHandle DATA at='commit' fired=0/2 removed>" == repr(handle)


def test_removing_the_last_fault_gives_the_dialect_its_do_commit_back(sqlite_engine):
    """With no fault left, the engine's dialect commits through its own do_commit again."""
    dialect = sqlite_engine.dialect
    with inject_fault(sqlite_engine, C.DATA), inject_fault(sqlite_engine, C.DATA, at="commit"):
        assert "do_commit" in vars(dialect)
    with inject_fault(sqlite_engine, C.DATA):
        assert "do_commit" in vars(dialect)

    assert "do_commit" not in vars(dialect)


def test_injecting_and_removing_while_other_threads_run_statements(pg_engine):
    """Faults come and go while statements run in other threads: only DBAPI errors surface."""
    stop = threading.Event()
    unexpected: list[BaseException] = []

    def work():
        with pg_engine.connect() as conn:
            while not stop.is_set():
                try:
                    conn.execute(sa.text("SELECT 1"))
                    conn.commit()
                except sa.exc.DBAPIError:
                    conn.rollback()
                except Exception as error:
                    unexpected.append(error)
                    return

    workers = [threading.Thread(target=work) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        for at in ["statement", "commit"] * 100:
            inject_fault(pg_engine, C.SERIALIZATION, at=at).remove()
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)

    assert ([], [False] * 3) == (unexpected, [worker.is_alive() for worker in workers])
    assert 42 == answer(pg_engine)


# -- with transactional() -------------------------------------------------------------------------


def test_transactional_retries_injected_faults_without_sleeping(pg_engine):
    """Two injected serialization failures: attempt 3 commits, and set_testing() skipped the waits."""
    policy = txpolicy.RetryPolicy(attempts=5, wait_initial=5, wait_max=5, jitter="none")
    calls = []

    @txpolicy.transactional(pg_engine, policy=policy)
    def work(conn):
        calls.append(1)
        return conn.execute(sa.text("SELECT 40 + 2")).scalar_one()

    started = time.monotonic()
    with set_testing(), inject_fault(pg_engine, C.SERIALIZATION, times=2) as handle:
        result = work()

    assert (42, 3, 2) == (result, len(calls), handle.fired)
    assert time.monotonic() - started < 4


def test_transactional_surfaces_a_connection_lost_during_commit_as_commit_unknown(pg_engine):
    """CONNECTION at='commit' is the ambiguous commit: CommitUnknownError, not retried."""
    calls = []

    @txpolicy.transactional(pg_engine)
    def work(conn):
        calls.append(1)
        conn.execute(sa.text("SELECT 1"))

    with set_testing(), inject_fault(pg_engine, C.CONNECTION, at="commit") as handle:
        with pytest.raises(txpolicy.CommitUnknownError) as info:
            work()

    assert (1, 1, True) == (len(calls), handle.fired, info.value.during_commit)

