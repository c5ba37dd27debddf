"""Scope hooks: a context manager entered around each whole transaction, real failures only."""

from __future__ import annotations

import contextvars
import logging

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

import txpolicy
from txpolicy import RetryPolicy
from txpolicy._bench import BenchTarget
from txpolicy._hooks import HOOKS
from txpolicy.instrumentation import add_scope_hook
from txpolicy.testing import set_testing

INSIDE: contextvars.ContextVar[str | None] = contextvars.ContextVar("inside", default=None)


class Recorder:
    """A scope hook that logs what it sees and makes its operation current while it runs."""

    def __init__(self):
        self.log = []

    def __call__(self, operation):
        return _Scope(self, operation)


class _Scope:
    def __init__(self, recorder, operation):
        self.recorder, self.operation, self.token = recorder, operation, None

    def __enter__(self):
        self.recorder.log.append(("enter", self.operation))
        self.token = INSIDE.set(self.operation)

    def __exit__(self, exc_type, exc, tb):
        INSIDE.reset(self.token)
        self.recorder.log.append(("exit", self.operation, exc))
        return True  # ignored: a scope hook cannot swallow the error


@pytest.fixture
def recorder():
    """A registered :class:`Recorder`, removed after the test."""
    hook = Recorder()
    remove = add_scope_hook(hook)
    yield hook
    remove()


@pytest.fixture
def locked_target(tmp_path):
    """A SQLite file whose next write fails for real with "database is locked"."""
    target = BenchTarget(f"sqlite:///{tmp_path / 'locked.db'}")
    yield target
    target.close()


@pytest.fixture
def factory(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'hooks.db'}")
    yield sessionmaker(engine)
    engine.dispose()


def test_a_retried_call_is_one_scope(recorder, locked_target):
    """A real lock failure retried: the hook is entered once before the first attempt and left
    once after the commit, and both attempts run inside it."""
    seen = []

    @txpolicy.transactional(locked_target.retry_factory, operation_type="write")
    def write(session):
        seen.append(INSIDE.get())
        locked_target.write(session)

    locked_target.arm()
    with set_testing():
        write()

    assert ["write", "write"] == seen
    assert [("enter", "write"), ("exit", "write", None)] == recorder.log
    assert INSIDE.get() is None


def test_the_error_that_leaves_the_scope_reaches_the_hook(recorder, locked_target):
    """A give-up hands the hook the very error that is raised (the classified one); the
    hook's True return value does not swallow it."""
    write = txpolicy.transactional(
        locked_target.retry_factory, policy=RetryPolicy(attempts=1), operation_type="write"
    )(locked_target.write)
    locked_target.arm()

    with pytest.raises(txpolicy.LockTimeoutError) as raised:
        write()

    assert [("enter", "write"), ("exit", "write", raised.value)] == recorder.log


@pytest.mark.parametrize("form", ["decorator", "block", "context_manager"])
def test_an_application_error_reaches_the_hook_unchanged(recorder, factory, form):
    """A non-database error leaves every form unchanged, and the hook gets that object."""
    error = KeyError("mine")

    def body(session):
        session.execute(sa.text("SELECT 1"))
        raise error

    with pytest.raises(KeyError) as raised:
        if form == "decorator":
            txpolicy.transactional(factory, operation_type="op")(body)()
        elif form == "block":
            for attempt in txpolicy.attempts(factory, operation_type="op"):
                with attempt as session:
                    body(session)
        else:
            with txpolicy.transactional(factory, operation_type="op") as session:
                body(session)

    assert error is raised.value
    assert [("enter", "op"), ("exit", "op", error)] == recorder.log


def test_a_retried_block_is_one_scope(recorder, locked_target):
    """An ``attempts()`` block that retries enters the hook once, around all its attempts."""
    seen = []
    locked_target.arm()

    with set_testing():
        for attempt in txpolicy.attempts(locked_target.retry_factory, operation_type="block"):
            with attempt as session:
                seen.append(INSIDE.get())
                locked_target.write(session)

    assert ["block", "block"] == seen
    assert [("enter", "block"), ("exit", "block", None)] == recorder.log


def test_leaving_a_block_between_attempts_leaves_the_hook(recorder, locked_target):
    """A loop left after a failed attempt that would have been retried still leaves the
    hook (with the GeneratorExit that closes the block), so nothing stays current."""
    locked_target.arm()

    with set_testing():
        for attempt in txpolicy.attempts(locked_target.retry_factory, operation_type="block"):
            with attempt as session:
                locked_target.write(session)
            break

    [entered, (event, operation, error)] = recorder.log
    assert (("enter", "block"), "exit", "block") == (entered, event, operation)
    assert GeneratorExit is type(error)
    assert INSIDE.get() is None


def test_joined_scopes_enter_nothing(recorder, factory):
    """Joined and savepoint scopes belong to their owner's transaction; a ``requires_new``
    scope is a transaction of its own, inside the owner's."""

    @txpolicy.transactional(factory, operation_type="joined")
    def joined(session):
        session.execute(sa.text("SELECT 1"))

    @txpolicy.transactional(factory, operation_type="nested", propagation="nested")
    def nested(session):
        session.execute(sa.text("SELECT 1"))

    @txpolicy.transactional(factory, operation_type="new", propagation="requires_new")
    def new(session):
        return INSIDE.get()

    @txpolicy.transactional(factory, operation_type="owner")
    def owner(session):
        joined()
        nested()
        return new()

    assert "new" == owner()
    assert [
        ("enter", "owner"),
        ("enter", "new"),
        ("exit", "new", None),
        ("exit", "owner", None),
    ] == recorder.log


@pytest.mark.anyio
@pytest.mark.parametrize("form", ["decorator", "block", "context_manager"])
async def test_async_scopes_keep_the_hook_current_in_their_task(recorder, tmp_path, form):
    """Async scopes enter the same sync context manager; what it sets is current in the body,
    across awaits, and restored afterwards."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'hooks.db'}")
    factory = async_sessionmaker(engine)
    seen = []

    async def body(session):
        await session.execute(sa.text("SELECT 1"))
        seen.append(INSIDE.get())

    try:
        if form == "decorator":
            await txpolicy.transactional(factory, operation_type="op")(body)()
        elif form == "block":
            async for attempt in txpolicy.attempts(factory, operation_type="op"):
                async with attempt as session:
                    await body(session)
        else:
            async with txpolicy.transactional(factory, operation_type="op") as session:
                await body(session)
    finally:
        await engine.dispose()

    assert ["op"] == seen
    assert [("enter", "op"), ("exit", "op", None)] == recorder.log
    assert INSIDE.get() is None


def _broken_factory(operation):
    raise RuntimeError(f"no scope for {operation}")


class _BrokenExit:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        raise RuntimeError("cannot leave")


@pytest.mark.parametrize(
    "hook",
    [pytest.param(_broken_factory, id="factory"), pytest.param(lambda _: _BrokenExit(), id="exit")],
)
def test_a_failing_hook_is_logged_and_never_breaks_the_transaction(
    recorder, factory, caplog, hook
):
    """A factory or ``__exit__`` that raises is logged on ``txpolicy.hooks``; the transaction
    commits and the other hooks still run."""
    remove = add_scope_hook(hook)

    @txpolicy.transactional(factory, operation_type="op")
    def one(session):
        return session.execute(sa.text("SELECT 1")).scalar_one()

    try:
        with caplog.at_level(logging.ERROR, logger="txpolicy.hooks"):
            result = one()
    finally:
        remove()

    assert 1 == result
    assert [("enter", "op"), ("exit", "op", None)] == recorder.log
    assert 1 == len([r for r in caplog.records if r.name == "txpolicy.hooks"])


def test_removing_a_hook_is_idempotent():
    """The remover takes the hook out once; calling it again changes nothing."""
    before = HOOKS.scope
    remove = add_scope_hook(Recorder())

    remove()
    remove()

    assert before == HOOKS.scope


def test_a_hook_must_be_callable():
    """A factory that cannot be called is refused when it is registered."""
    with pytest.raises(TypeError, match="callable"):
        add_scope_hook("span")
