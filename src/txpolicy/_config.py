"""
Process-wide switches (the shape of stamina's ``_config.py``).

Only one switch exists so far: *testing mode*, in which retrying scopes keep every decision and
every attempt count but never sleep between attempts.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["is_testing", "set_testing"]


class _Config:
    """
    Mutable process-wide settings.

    A plain attribute read on the retry path; writes take a lock so that concurrent
    ``set_testing`` calls restore each other's state in a well-defined order.
    """

    __slots__ = ("lock", "testing")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.testing = False


CONFIG = _Config()


class _RestoreTestingCM:
    """Return value of :func:`set_testing`: using it as a context manager restores the old state."""

    __slots__ = ("_previous",)

    def __init__(self, previous: bool) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with CONFIG.lock:
            CONFIG.testing = self._previous


def set_testing(enabled: bool = True) -> _RestoreTestingCM:
    """
    Turn testing mode on or off for the whole process.

    In testing mode, retrying scopes make exactly the same decisions (which errors are retried,
    how many attempts, which waits they *would* take) and report the same attempt counts, but
    never sleep, so tests that provoke retries run at full speed.

    The return value may be used as a context manager that restores the previous state::

        with set_testing():
            run_code_that_retries()

    Args:
        enabled: Whether testing mode is on.

    Returns:
        An object that restores the previous state when used as a context manager.

    .. versionadded:: 0.1.0
    """
    with CONFIG.lock:
        previous = CONFIG.testing
        CONFIG.testing = bool(enabled)
    return _RestoreTestingCM(previous)


def is_testing() -> bool:
    """
    Whether testing mode is on.

    .. versionadded:: 0.1.0
    """
    return CONFIG.testing
