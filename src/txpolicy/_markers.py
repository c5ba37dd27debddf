"""
The built-in commit marker: an idempotency key written in the transaction it vouches for.

With ``commit_marker=`` a scope that owns its transaction INSERTs a key into a small table
(``txpolicy_commit_markers`` by default), in the same transaction, right before COMMIT. When
the connection is lost during COMMIT, a fresh transaction *probes* for the key with an INSERT
that skips an existing key (``ON CONFLICT DO NOTHING`` / ``INSERT IGNORE`` / ``INSERT OR
IGNORE``) and is then rolled back: key already there → the lost COMMIT happened; key inserted →
it did not. Unlike a plain SELECT, the probe waits for a lost transaction that the server has
not finished yet (it holds the key's index entry), so it cannot answer "absent" for a COMMIT
still in flight.

The table is created on demand (``CREATE TABLE IF NOT EXISTS``) once per engine, before the
first attempt that needs it, on a connection of its own: MySQL commits implicitly around DDL,
so it must not run inside the caller's transaction. Keys pile up; :func:`purge_commit_markers`
deletes the old ones.

This module holds the SQL (per dialect, the table name validated once), the per-engine "table
is ready" registry and the two I/O helpers that stand alone (table creation and purge); the
marker's INSERT and probe run in the transaction shells (``_sync``, ``_async``).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import uuid
import weakref
from collections.abc import Callable
from typing import Any

import attrs
from sqlalchemy import text as _text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlalchemy.orm import sessionmaker

from ._binds import Statement
from ._exceptions import ConfigurationError

__all__ = [
    "DEFAULT_TABLE",
    "CommitMarker",
    "apurge_commit_markers",
    "purge_commit_markers",
]

DEFAULT_TABLE = "txpolicy_commit_markers"
MAX_KEY_LENGTH = 255  # the MySQL column is VARCHAR(255)
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?\Z")
_POSTGRES = frozenset({"postgresql", "cockroachdb"})
_MYSQL = frozenset({"mysql", "mariadb"})


def _check_key_function(_inst: object, _attribute: object, value: Any) -> None:
    """``None`` or a synchronous callable (it runs before any I/O of the call)."""
    if value is None:
        return
    if not callable(value):
        raise TypeError(f"CommitMarker key must be a callable or None, got {value!r}")
    from ._scopes import is_async_callable  # noqa: PLC0415 - avoids an import cycle

    if is_async_callable(value):
        raise TypeError(f"CommitMarker key must be a plain function, not async: {value!r}")


def _check_table(_inst: object, _attribute: object, value: object) -> None:
    """A plain (optionally schema-qualified) SQL identifier: it is spliced into statements."""
    if not isinstance(value, str):
        raise TypeError(f"CommitMarker table must be a string, got {value!r}")
    if not _TABLE_NAME.match(value):
        raise ValueError(
            f"CommitMarker table must be an identifier such as 'txpolicy_commit_markers' or "
            f"'schema.table' (letters, digits, underscores), got {value!r}"
        )


@attrs.frozen
class CommitMarker:
    """
    The built-in commit marker of a scope: ``transactional(bind, commit_marker=...)``.

    ``commit_marker=True`` is ``CommitMarker()`` and ``commit_marker=function`` is
    ``CommitMarker(key=function)``.

    Args:
        key: Makes the idempotency key of a call from the call's arguments (without the
            session; no arguments for the ``with`` and ``attempts()`` forms). It must return
            a non-empty string of at most 255 characters, unique per logical operation: a
            second call with a key that is still in the table fails with
            :class:`~txpolicy.IntegrityError` (the work was done already). Default: a fresh
            random UUID per call. Either way the key is made once per call and reused by all
            of its attempts.
        table: The marker table, optionally schema-qualified (``"ops.commit_markers"``).

    .. versionadded:: 0.1.0
    """

    key: Callable[..., str] | None = attrs.field(default=None, validator=_check_key_function)
    table: str = attrs.field(default=DEFAULT_TABLE, validator=_check_table)

    def make_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """
        The key of one call: the key function's result (checked), or a random UUID.

        Raises:
            TypeError: The key function returned something other than a string.
            ValueError: An empty key or one longer than 255 characters.
        """
        if self.key is None:
            return uuid.uuid4().hex
        key = self.key(*args, **kwargs)
        if not isinstance(key, str):
            raise TypeError(f"the commit marker key function must return a str, got {key!r}")
        if not 0 < len(key) <= MAX_KEY_LENGTH:
            raise ValueError(
                f"a commit marker key must have 1 to {MAX_KEY_LENGTH} characters, got {key!r}"
            )
        return key


def resolve_commit_marker(option: object) -> CommitMarker | None:
    """
    ``commit_marker=`` as given to a scope → a :class:`CommitMarker` or ``None`` (off).

    Raises:
        TypeError: Anything but a bool, a callable or a :class:`CommitMarker`.
    """
    if option is None or option is False:
        return None
    if option is True:
        return CommitMarker()
    if isinstance(option, CommitMarker):
        return option
    if isinstance(option, bool) or not callable(option):
        raise TypeError(
            f"commit_marker must be a bool, a key function or a CommitMarker, got {option!r}"
        )
    return CommitMarker(key=option)


# --- SQL per dialect ---------------------------------------------------------------------------


def _family(dialect_name: str) -> str:
    """``"postgresql"``, ``"mysql"`` or ``"sqlite"``; other databases have no marker table."""
    if dialect_name in _POSTGRES:
        return "postgresql"
    if dialect_name in _MYSQL:
        return "mysql"
    if dialect_name == "sqlite":
        return "sqlite"
    raise ConfigurationError(
        f"commit markers support PostgreSQL, MySQL/MariaDB and SQLite, not {dialect_name!r}; "
        "use verify= instead"
    )


def create_sql(dialect_name: str, table: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for the marker table."""
    family = _family(dialect_name)
    if family == "postgresql":
        return (
            f'CREATE TABLE IF NOT EXISTS {table} ("key" text PRIMARY KEY, '
            "created_at timestamptz NOT NULL DEFAULT now())"
        )
    if family == "mysql":
        # Binary collation: keys differing in case are different keys.
        return (
            f"CREATE TABLE IF NOT EXISTS {table} (`key` VARCHAR({MAX_KEY_LENGTH}) CHARACTER SET "
            "utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY, created_at TIMESTAMP(6) NOT NULL "
            "DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB"
        )
    return (
        f'CREATE TABLE IF NOT EXISTS {table} ("key" TEXT NOT NULL PRIMARY KEY, '
        "created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    )


def exists_sql(dialect_name: str, table: str) -> str:
    """A statement that fails unless the table exists (and returns no row)."""
    _family(dialect_name)
    return f"SELECT 1 FROM {table} WHERE 1 = 0"  # noqa: S608 - the name is validated


def _key_column(dialect_name: str) -> str:
    return "`key`" if _family(dialect_name) == "mysql" else '"key"'


def insert_statement(dialect_name: str, table: str, key: str) -> Statement:
    """The marker itself, written just before COMMIT in the transaction it vouches for."""
    column = _key_column(dialect_name)
    return Statement(f"INSERT INTO {table} ({column}) VALUES (:key)", {"key": key})  # noqa: S608


def probe_statement(dialect_name: str, table: str, key: str) -> Statement:
    """
    The INSERT that skips an existing key: one row inserted means the key was absent.

    It waits for a transaction that inserted the same key and has not ended yet, so an
    answer is only given once the lost transaction is over. The shell rolls it back.
    """
    family = _family(dialect_name)
    column = _key_column(dialect_name)
    # The table name is validated at construction and the key is a bind parameter.
    if family == "postgresql":
        sql = f"INSERT INTO {table} ({column}) VALUES (:key) ON CONFLICT DO NOTHING"  # noqa: S608
    elif family == "mysql":
        sql = f"INSERT IGNORE INTO {table} ({column}) VALUES (:key)"  # noqa: S608
    else:
        sql = f"INSERT OR IGNORE INTO {table} ({column}) VALUES (:key)"  # noqa: S608
    return Statement(sql, {"key": key})


def probe_found_key(rowcount: int) -> bool:
    """What the probe's row count says: no row inserted → the key was there → committed."""
    return rowcount == 0


def purge_statement(dialect_name: str, table: str, older_than: float) -> Statement:
    """DELETE the markers older than *older_than* seconds, by the server's clock."""
    family = _family(dialect_name)
    if family == "postgresql":
        return Statement(
            f"DELETE FROM {table} WHERE created_at < now() - :seconds * interval '1 second'",  # noqa: S608
            {"seconds": older_than},
        )
    if family == "mysql":
        return Statement(
            f"DELETE FROM {table} WHERE created_at < NOW(6) - INTERVAL :us MICROSECOND",  # noqa: S608
            {"us": round(older_than * 1_000_000)},
        )
    return Statement(
        f"DELETE FROM {table} WHERE created_at < datetime('now', :modifier)",  # noqa: S608
        {"modifier": f"-{older_than:.6f} seconds"},
    )


# --- the engine behind a bind, and the per-engine registry ------------------------------------


def engine_of(bind: object) -> Engine | AsyncEngine:
    """
    The engine that the marker table is created on and purged through.

    Accepts what ``transactional()`` accepts (and its resolved adapters), plus connections.

    Raises:
        ConfigurationError: A sessionmaker without a ``bind`` engine.
        TypeError: Anything else.
    """
    if isinstance(bind, (Engine, AsyncEngine)):
        return bind
    if isinstance(bind, (Connection, AsyncConnection)):
        return bind.engine
    if isinstance(bind, (sessionmaker, async_sessionmaker)):
        target = bind.kw.get("bind")
        if target is None:
            raise ConfigurationError(
                f"{bind!r} has no bind engine; commit markers need one to create their table"
            )
        return engine_of(target)
    engine = getattr(bind, "engine", None)  # a Database's engine adapter
    if isinstance(engine, (Engine, AsyncEngine)):
        return engine
    key = getattr(bind, "key", None)  # a plain bind's adapter
    if key is not None and key is not bind:
        return engine_of(key)
    provider = getattr(type(bind), "_txpolicy_adapter_", None)  # a Database
    if provider is not None:
        return engine_of(provider(bind))
    raise TypeError(
        "commit markers need an Engine, AsyncEngine, Connection, sessionmaker, "
        f"async_sessionmaker, Database or AsyncDatabase, got {type(bind).__name__}: {bind!r}"
    )


_READY: weakref.WeakKeyDictionary[Engine, frozenset[str]] = weakref.WeakKeyDictionary()
_READY_LOCK = threading.Lock()
_CREATE_LOCK = threading.Lock()


def _sync_engine(engine: Engine | AsyncEngine) -> Engine:
    return engine.sync_engine if isinstance(engine, AsyncEngine) else engine


def is_ready(engine: Engine | AsyncEngine, table: str) -> bool:
    """Whether the table is known to exist on *engine* (one dict lookup)."""
    return table in _READY.get(_sync_engine(engine), ())


def _mark_ready(engine: Engine | AsyncEngine, table: str) -> None:
    sync = _sync_engine(engine)
    with _READY_LOCK:
        _READY[sync] = _READY.get(sync, frozenset()) | {table}


def _raise_classified(exc: BaseException) -> None:
    """Raise the classified form of a database error (chained); return for anything else."""
    from ._errors import classify_error  # noqa: PLC0415 - avoids an import cycle at load

    classified = classify_error(exc)
    if classified is not exc:
        raise classified from exc


def ensure_table(engine: Engine, table: str) -> None:
    """
    Create the marker table on *engine* unless it is known to exist (thread-safe).

    Creation runs once per engine and process, on a connection of its own, before the
    caller's transaction begins. A table that exists already (made by another process, or by
    a DBA for a role without CREATE rights) is detected first, without DDL.

    Raises:
        ConfigurationError: The database has no marker support.
        TransactionError: The table could not be created (the classified error).
    """
    if is_ready(engine, table):
        return
    name = engine.dialect.name
    create, exists = create_sql(name, table), exists_sql(name, table)
    with _CREATE_LOCK:  # one creator per process; others wait for it, once
        if is_ready(engine, table):
            return
        try:
            with engine.connect() as conn:
                _create(conn, create, exists)
        except Exception as exc:
            _raise_classified(exc)
            raise
        _mark_ready(engine, table)


def prepare(bind: object, table: str) -> None:
    """Before a call with a marker: the table exists on the engine of *bind* (sync)."""
    engine = engine_of(bind)
    if not is_ready(engine, table):
        assert isinstance(engine, Engine)
        ensure_table(engine, table)


async def aprepare(bind: object, table: str) -> None:
    """Before a call with a marker: the table exists on the engine of *bind* (async)."""
    engine = engine_of(bind)
    if not is_ready(engine, table):
        assert isinstance(engine, AsyncEngine)
        await aensure_table(engine, table)


def _create(conn: Connection, create: str, exists: str) -> None:
    """Probe, else create; a creator racing us (another process) is no error if it won."""
    try:
        conn.execute(_text(exists))
        conn.rollback()
    except Exception:
        conn.rollback()
    else:
        return
    try:
        conn.execute(_text(create))
        conn.commit()
    except Exception:
        conn.rollback()
        conn.execute(_text(exists))  # raises when the table is still missing
        conn.rollback()


async def aensure_table(engine: AsyncEngine, table: str) -> None:
    """
    :func:`ensure_table` for an ``AsyncEngine``.

    No lock is held across ``await``: concurrent first calls may each issue the
    ``CREATE TABLE IF NOT EXISTS``, which is harmless (a lost race is detected and ignored).
    """
    if is_ready(engine, table):
        return
    name = engine.dialect.name
    create, exists = create_sql(name, table), exists_sql(name, table)
    try:
        async with engine.connect() as conn:
            await _acreate(conn, create, exists)
    except Exception as exc:
        _raise_classified(exc)
        raise
    _mark_ready(engine, table)


async def _acreate(conn: AsyncConnection, create: str, exists: str) -> None:
    """:func:`_create` with ``await``."""
    try:
        await conn.execute(_text(exists))
        await conn.rollback()
    except Exception:
        await conn.rollback()
    else:
        return
    try:
        await conn.execute(_text(create))
        await conn.commit()
    except Exception:
        await conn.rollback()
        await conn.execute(_text(exists))
        await conn.rollback()


# --- cleanup ------------------------------------------------------------------------------------


def _seconds(older_than: object) -> float:
    """A positive age, given as a ``timedelta`` or in seconds."""
    if isinstance(older_than, dt.timedelta):
        seconds = older_than.total_seconds()
    elif isinstance(older_than, (int, float)) and not isinstance(older_than, bool):
        seconds = float(older_than)
    else:
        raise TypeError(f"older_than must be a timedelta or seconds, got {older_than!r}")
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"older_than must be positive and finite, got {older_than!r}")
    return seconds


def _purge_target(bind: object, table: str, *, want_async: bool) -> Engine | AsyncEngine:
    """Check the arguments of the purge helpers; the engine to purge through."""
    _check_table(None, None, table)
    engine = engine_of(bind)
    if isinstance(engine, AsyncEngine) != want_async:
        other = "apurge_commit_markers" if not want_async else "purge_commit_markers"
        raise TypeError(f"{bind!r} is {'sync' if not want_async else 'async'}; use {other}()")
    return engine


def purge_commit_markers(
    bind: object,
    /,
    *,
    older_than: dt.timedelta | float = dt.timedelta(days=1),
    table: str = DEFAULT_TABLE,
) -> int:
    """
    Delete the commit markers older than *older_than*; how many were deleted.

    Markers are only read after a COMMIT of unknown outcome, within the call that wrote them,
    so a marker older than the longest call (its policy's ``deadline`` plus the final attempt)
    is never read again. Run this periodically (a daily job with the default is plenty): one
    marker row per committed call accumulates otherwise. With a ``key`` function the marker
    also refuses a second call with the same key; purging ends that protection for the keys
    it deletes, so pick *older_than* beyond the window in which a repeat must be refused.

    Args:
        bind: An ``Engine``, ``Connection``, ``sessionmaker`` or ``Database`` (sync); the
            marker table is created on it if it does not exist yet.
        older_than: The minimum age of the markers to delete (a ``timedelta``, or seconds),
            measured by the database server's clock.
        table: The marker table, as given to :class:`CommitMarker`.

    Returns:
        The number of markers deleted.

    Raises:
        TypeError: An async bind (use :func:`apurge_commit_markers`), or a bad argument.
        ValueError: A non-positive *older_than* or a bad table name.

    .. versionadded:: 0.1.0
    """
    seconds = _seconds(older_than)
    engine = _purge_target(bind, table, want_async=False)
    assert isinstance(engine, Engine)
    ensure_table(engine, table)
    statement = purge_statement(engine.dialect.name, table, seconds)
    try:
        with engine.begin() as conn:
            return int(conn.execute(_text(statement.sql), dict(statement.params)).rowcount)
    except Exception as exc:
        _raise_classified(exc)
        raise


async def apurge_commit_markers(
    bind: object,
    /,
    *,
    older_than: dt.timedelta | float = dt.timedelta(days=1),
    table: str = DEFAULT_TABLE,
) -> int:
    """
    Delete old commit markers through an async bind (``await``-ed).

    The async twin of :func:`purge_commit_markers`, which says when to run it.

    Args:
        bind: An ``AsyncEngine``, ``AsyncConnection``, ``async_sessionmaker`` or
            ``AsyncDatabase``.
        older_than: As for :func:`purge_commit_markers`.
        table: As for :func:`purge_commit_markers`.

    Returns:
        The number of markers deleted.

    Raises:
        TypeError: A sync bind (use :func:`purge_commit_markers`), or a bad argument.
        ValueError: A non-positive *older_than* or a bad table name.

    .. versionadded:: 0.1.0
    """
    seconds = _seconds(older_than)
    engine = _purge_target(bind, table, want_async=True)
    assert isinstance(engine, AsyncEngine)
    await aensure_table(engine, table)
    statement = purge_statement(engine.dialect.name, table, seconds)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(_text(statement.sql), dict(statement.params))
            return int(result.rowcount)
    except Exception as exc:
        _raise_classified(exc)
        raise
