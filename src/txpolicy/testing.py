"""
Helpers for testing code that uses txpolicy: instant retries, and real database errors on demand.

- :func:`set_testing` switches retries to no-wait mode: the same decisions and attempt
  counts, no sleeping.
- :func:`inject_fault` makes the next statements or commits on a bind fail with a real
  driver error of a chosen :class:`~txpolicy.ErrorCategory`; it returns a
  :class:`FaultHandle`.
- :class:`FaultInjector` groups faults that are removed together.

The pytest plugin ``txpolicy`` (installed with the package) wraps them in the
``txpolicy_testing`` and ``txpolicy_faults`` fixtures.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from . import _faults
from ._config import set_testing
from ._faults import FaultHandle

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

    from ._exceptions import ErrorCategory
    from ._faults import At, FaultTarget

__all__ = ["FaultHandle", "FaultInjector", "inject_fault", "set_testing"]


def inject_fault(
    bind: FaultTarget,
    category: ErrorCategory,
    *,
    at: At = "statement",
    times: int = 1,
) -> FaultHandle:
    """
    Make the next *times* statements or commits on *bind* fail with a real database error.

    The error is the driver's own exception with its real SQLSTATE or error number, raised
    where the driver raises it, so SQLAlchemy wraps it (``DBAPIError`` with ``.orig``) and
    invalidates the connection after a connection fault exactly as it does for a real one,
    and :func:`~txpolicy.classify_error` gives it *category*:

    - PostgreSQL (psycopg, asyncpg): the server raises the SQLSTATE (``40P01``, ``40001``,
      ``55P03``, ``25006``, ``53300``, ``57014``, ``40003``, ``23505``, ``22P02``,
      ``42501``, ``42P01``, ``XX000``) and aborts the transaction; a ``CONNECTION`` fault
      terminates the session's own backend (FATAL ``57P01``).
    - MySQL and MariaDB (PyMySQL): the server raises the error number (1213, 1020, 1205,
      1290, 1040, 1969 or MySQL's 3024, 1062, 1264, 1142, 1146, 1105); a ``CONNECTION``
      fault shuts the client socket, so PyMySQL raises its own 2006. There is no
      ``COMMIT_UNKNOWN`` error: inject ``CONNECTION`` with ``at="commit"`` instead.
    - SQLite (sqlite3, aiosqlite): ``database is locked`` (``LOCK_TIMEOUT``, result code 5;
      ``SERIALIZATION``, 517, Python 3.11+), a unique violation, ``string or blob too
      big`` and ``no such table``, built as CPython builds them.

    The statement that draws a fault is not run; a fault at ``"commit"`` means the
    transaction was not committed. Every statement counts, including the ones a
    transactional scope runs for itself at the start of each attempt. Faults on the same
    bind fire in the order they were injected; statements run while a dialect connects for
    the first time never draw one.

    Args:
        bind: An ``Engine``, ``AsyncEngine``, ``sessionmaker``, ``async_sessionmaker``,
            :class:`~txpolicy.Database` or :class:`~txpolicy.AsyncDatabase` (every engine
            it holds). The fault applies to every connection of those engines, in every
            thread and task.
        category: The kind of error to raise (its string value is accepted too).
        at: ``"statement"`` fails statements, ``"commit"`` fails COMMITs.
        times: How many statements or commits fail before the bind works again.

    Returns:
        A handle that counts the faults fired and removes the fault; it is also a context
        manager that removes the fault when the block ends.

    Raises:
        TypeError: *bind* is not one of the types above, or an argument has the wrong type.
        ValueError: an unknown category, *at* not ``"statement"`` or ``"commit"``,
            *times* < 1, a driver txpolicy cannot inject into, or a category that the
            database cannot produce (``DEADLOCK`` on SQLite, for example).

    .. versionadded:: 0.1.0
    """
    return _faults.inject(bind, category, at, times)


class FaultInjector:
    """
    Injects faults and removes all of them at once.

    What the ``txpolicy_faults`` fixture gives a test; usable without pytest as a context
    manager::

        with FaultInjector() as faults:
            faults.inject(engine, ErrorCategory.DEADLOCK, times=2)
            ...

    .. versionadded:: 0.1.0
    """

    def __init__(self) -> None:
        """Start with no faults."""
        self._lock = threading.Lock()
        self._handles: list[FaultHandle] = []

    def inject(
        self,
        bind: FaultTarget,
        category: ErrorCategory,
        *,
        at: At = "statement",
        times: int = 1,
    ) -> FaultHandle:
        """
        Inject a fault as :func:`inject_fault` does, and remember it for :meth:`remove_all`.

        Args:
            bind: As for :func:`inject_fault`.
            category: As for :func:`inject_fault`.
            at: As for :func:`inject_fault`.
            times: As for :func:`inject_fault`.

        Returns:
            The fault's handle.
        """
        handle = inject_fault(bind, category, at=at, times=times)
        with self._lock:
            self._handles.append(handle)
        return handle

    @property
    def handles(self) -> tuple[FaultHandle, ...]:
        """Every fault injected through this injector and not yet removed by it."""
        with self._lock:
            return tuple(self._handles)

    def remove_all(self) -> None:
        """Remove every fault injected through this injector."""
        with self._lock:
            handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()

    def __enter__(self) -> Self:
        """Return the injector; its faults are removed when the block ends."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Remove every fault injected through this injector."""
        self.remove_all()
