"""
The user context of a transaction, and the statements that hand it to the database.

A :class:`UserContext` is bound to the current thread or asyncio task with
:func:`user_context` (a :class:`~contextvars.ContextVar`, so child tasks inherit it and
threads never see each other's), or to one scope with its ``user_context=`` argument.

What reaches the database is decided here, as data (sans-io): :class:`_ContextStatements`
turns a context into the :class:`~txpolicy._binds.Statement` list that every transaction
attempt runs right after BEGIN (and again after ROLLBACK TO SAVEPOINT):

- PostgreSQL: ``set_config(name, value, true)`` for ``<prefix>.user_id`` and
  ``<prefix>.tenant_id`` -- transaction-local, so a value can never outlive its transaction
  on a pooled connection; a missing value, or a transaction without a context, sets ``''``.
- MySQL / MariaDB: the session variables ``@<prefix>_user_id`` and ``@<prefix>_tenant_id``,
  set at the start of each transaction (``NULL`` when missing) and reset to ``NULL`` when it
  ends.
- Other databases have nowhere to put it: no statements.

Values always travel as bind parameters; only the prefix, validated as an ASCII
identifier when the database is built, is ever part of the SQL text.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from typing import TYPE_CHECKING, Any, Final

import attrs

from ._binds import Statement

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["UserContext", "current_user_context", "user_context"]

_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_id(
    _instance: UserContext, attribute: attrs.Attribute[Any], value: Any
) -> None:
    """Refuse ids the database could not store or could not tell from "no context"."""
    if value is None and attribute.name == "tenant_id":
        return
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        msg = f"UserContext.{attribute.name} must be a str or an int, not {type(value).__name__}"
        raise TypeError(msg)
    if isinstance(value, str) and (value == "" or "\x00" in value):
        msg = f"UserContext.{attribute.name} must be a non-empty string without NUL characters"
        raise ValueError(msg)


@attrs.frozen
class UserContext:
    """
    Who a transaction runs for: the user and, optionally, the tenant.

    Immutable and compared by value (``UserContext(7) != UserContext("7")``: the types
    differ, even though the database receives ``'7'`` for both). The database sees the
    values as text, through ``current_setting('txpolicy.user_id', true)`` on PostgreSQL or
    ``@txpolicy_user_id`` on MySQL / MariaDB.

    Args:
        user_id: The user, a non-empty string or an int.
        tenant_id: The tenant, a non-empty string or an int, or ``None``.

    .. versionadded:: 0.1.0
    """

    user_id: str | int = attrs.field(validator=_check_id)
    tenant_id: str | int | None = attrs.field(default=None, validator=_check_id)


_CURRENT: contextvars.ContextVar[UserContext | None] = contextvars.ContextVar(
    "txpolicy_user_context", default=None
)


def current_user_context() -> UserContext | None:
    """
    The user context bound to the current thread or asyncio task, if any.

    Returns:
        The innermost context bound by :func:`user_context` or by an enclosing scope's
        ``user_context=`` argument, or ``None``.

    .. versionadded:: 0.1.0
    """
    return _CURRENT.get()


@contextlib.contextmanager
def user_context(context: UserContext | None) -> Iterator[UserContext | None]:
    """
    Bind *context* to the current thread or asyncio task for the ``with`` block.

    Transactions opened inside the block run for this context. Tasks created inside the
    block inherit it; other threads and tasks never see it. ``None`` unbinds any enclosing
    context for the block (a database built with ``require_user_context=True`` then refuses
    to open transactions). The previous binding is restored on exit, also on errors.

    Args:
        context: The context to bind, or ``None``.

    Raises:
        TypeError: *context* is neither a :class:`UserContext` nor ``None``.

    .. versionadded:: 0.1.0
    """
    if context is not None and not isinstance(context, UserContext):
        msg = f"user_context() takes a UserContext or None, not {type(context).__name__}"
        raise TypeError(msg)
    token = _CURRENT.set(context)
    try:
        yield context
    finally:
        _CURRENT.reset(token)


def check_prefix(prefix: object) -> str:
    """Validate *prefix* once, at construction: it is the only part of the SQL built from text."""
    if not isinstance(prefix, str):
        msg = f"settings_prefix must be a str, not {type(prefix).__name__}"
        raise TypeError(msg)
    if not _IDENTIFIER.fullmatch(prefix):
        msg = (
            f"settings_prefix must be an ASCII identifier (letters, digits, underscores, "
            f"not starting with a digit), not {prefix!r}"
        )
        raise ValueError(msg)
    return prefix


def _text(value: str | int | None) -> str:
    """PostgreSQL settings are text; a missing value is the empty string."""
    return "" if value is None else str(value)


def _text_or_null(value: str | int | None) -> str | None:
    """MySQL user variables: a missing value is NULL, which compares equal to nothing."""
    return None if value is None else str(value)


_DIALECTS: Final = frozenset({"postgresql", "mysql", "mariadb"})

_POSTGRES_SETUP: Final = (
    "SELECT set_config(:txpolicy_user_name, :txpolicy_user_id, true), "
    "set_config(:txpolicy_tenant_name, :txpolicy_tenant_id, true)"
)


@attrs.frozen
class _ContextStatements:
    """The context statements of one database, built once per prefix; calls only pick a list."""

    prefix: str = attrs.field(converter=check_prefix)
    _pg_empty: tuple[Statement, ...] = attrs.field(init=False)
    _mysql_set: str = attrs.field(init=False)
    _mysql_clear: tuple[Statement, ...] = attrs.field(init=False)

    @_pg_empty.default
    def _pg_empty_default(self) -> tuple[Statement, ...]:
        return (Statement(_POSTGRES_SETUP, self._pg_params(None)),)

    @_mysql_set.default
    def _mysql_set_default(self) -> str:
        return (
            f"SET @{self.prefix}_user_id = :txpolicy_user_id, "
            f"@{self.prefix}_tenant_id = :txpolicy_tenant_id"
        )

    @_mysql_clear.default
    def _mysql_clear_default(self) -> tuple[Statement, ...]:
        sql = f"SET @{self.prefix}_user_id = NULL, @{self.prefix}_tenant_id = NULL"
        return (Statement(sql, {}),)

    def _pg_params(self, context: UserContext | None) -> dict[str, str]:
        return {
            "txpolicy_user_name": f"{self.prefix}.user_id",
            "txpolicy_user_id": "" if context is None else _text(context.user_id),
            "txpolicy_tenant_name": f"{self.prefix}.tenant_id",
            "txpolicy_tenant_id": "" if context is None else _text(context.tenant_id),
        }

    def applies_to(self, dialect_name: str) -> bool:
        """Whether *dialect_name* gets statements at all (SQLite and others get none)."""
        return dialect_name in _DIALECTS

    def setup(self, dialect_name: str, context: UserContext | None) -> Sequence[Statement]:
        """What every attempt runs after BEGIN (and after ROLLBACK TO SAVEPOINT)."""
        if dialect_name == "postgresql":
            if context is None:
                return self._pg_empty
            return (Statement(_POSTGRES_SETUP, self._pg_params(context)),)
        if dialect_name in ("mysql", "mariadb"):
            params = {
                "txpolicy_user_id": None if context is None else _text_or_null(context.user_id),
                "txpolicy_tenant_id": None
                if context is None
                else _text_or_null(context.tenant_id),
            }
            return (Statement(self._mysql_set, params),)
        return ()

    def teardown(self, dialect_name: str) -> Sequence[Statement]:
        """What runs on the connection once the transaction has ended (MySQL variables)."""
        if dialect_name in ("mysql", "mariadb"):
            return self._mysql_clear
        return ()
