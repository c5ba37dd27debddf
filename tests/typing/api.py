"""
Typed usage of txpolicy's transaction API: ``mypy --strict tests/typing/api.py`` must pass.

The decorated signature is the function's minus the session (``Concatenate``), async wrappers
return coroutines, and the context-manager and block forms yield the type the bind implies.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker
from typing_extensions import assert_type

import txpolicy

engine = sa.create_engine("sqlite://")
async_engine = create_async_engine("sqlite+aiosqlite://")
Sessions = sessionmaker(engine)
AsyncSessions = async_sessionmaker(async_engine)


class MySession(Session):
    """A custom Session class: the decorator keeps it."""


MySessions = sessionmaker(engine, class_=MySession)


@txpolicy.transactional(Sessions, isolation_level="SERIALIZABLE", policy=txpolicy.RetryPolicy())
def transfer(session: Session, src: int, dst: int, *, amount: int = 1) -> str:
    """A sync repository function."""
    session.execute(sa.text("SELECT 1"))
    return f"{src}->{dst}:{amount}"


@txpolicy.transactional(engine, propagation="nested", read_only=True, lock_timeout=0.5)
def count(conn: sa.Connection, table: str) -> int:
    """A sync function on an Engine: it receives a Connection."""
    return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


@txpolicy.transactional(MySessions)
def custom(session: MySession) -> MySession:
    """The sessionmaker's class flows through."""
    return session


@txpolicy.transactional(AsyncSessions, idempotent=True)
async def load(session: AsyncSession, key: str) -> bytes:
    """An async function: the wrapper is still a coroutine function."""
    await session.execute(sa.text("SELECT 1"))
    return key.encode()


@txpolicy.transactional(async_engine, statement_timeout=2)
async def ping(conn: AsyncConnection) -> None:
    """An async function on an AsyncEngine."""
    await conn.execute(sa.text("SELECT 1"))


def sync_usage() -> None:
    """The sync forms."""
    assert_type(transfer(1, 2), str)
    assert_type(transfer(1, 2, amount=5), str)
    assert_type(count("t"), int)
    assert_type(custom(), MySession)

    with txpolicy.transactional(Sessions) as session:
        assert_type(session, Session)
    with txpolicy.transactional(engine, user_context=None) as conn:
        assert_type(conn, sa.Connection)
    for attempt in txpolicy.attempts(Sessions, operation_type="batch"):
        with attempt as session:
            assert_type(session, Session)
            assert_type(attempt.num, int)
    for attempt2 in txpolicy.attempts(engine):
        with attempt2 as conn:
            assert_type(conn, sa.Connection)

    txpolicy.on_commit(lambda: None)
    assert_type(txpolicy.current_session(), Any)


async def async_usage() -> None:
    """The async forms."""
    pending: Coroutine[Any, Any, bytes] = load("k")  # a coroutine until awaited
    assert_type(await pending, bytes)
    await ping()

    async with txpolicy.transactional(AsyncSessions) as session:
        assert_type(session, AsyncSession)
    async with txpolicy.transactional(async_engine) as conn:
        assert_type(conn, AsyncConnection)
    async for attempt in txpolicy.attempts(AsyncSessions):
        async with attempt as session:
            assert_type(session, AsyncSession)
    async for attempt2 in txpolicy.attempts(async_engine, propagation="requires_new"):
        async with attempt2 as conn:
            assert_type(conn, AsyncConnection)


def policies() -> None:
    """Policies and budgets are plain typed values."""
    budget = txpolicy.RetryBudget(max_tokens=20, token_ratio=0.2)
    policy = txpolicy.RetryPolicy(
        attempts=3,
        wait_initial=0.01,
        wait_max=1.0,
        jitter="none",
        deadline=None,
        retry_on={txpolicy.ErrorCategory.DEADLOCK},
        budget=budget,
        escalate_after=2,
    )
    assert_type(policy.retry_on, frozenset[txpolicy.ErrorCategory])
    assert_type(budget.refused, int)
