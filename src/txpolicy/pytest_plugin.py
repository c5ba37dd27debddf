"""
The pytest plugin ``txpolicy``: fixtures over :mod:`txpolicy.testing`.

pytest loads it in every run of a project that has txpolicy installed (entry point
``pytest11``), so importing it must stay cheap and do nothing: txpolicy itself is imported
only when a test asks for one of the fixtures.

- ``txpolicy_testing``: no-wait mode for the test (retries are decided and counted, but
  never sleep); the previous mode is restored afterwards.
- ``txpolicy_faults``: a :class:`~txpolicy.testing.FaultInjector`; every fault injected
  through it is removed after the test, passed or failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .testing import FaultInjector


@pytest.fixture
def txpolicy_testing() -> Iterator[None]:
    """
    Run the test in txpolicy's no-wait mode, restoring the previous mode afterwards.

    .. versionadded:: 0.1.0
    """
    from .testing import set_testing  # noqa: PLC0415 - keep the plugin's import cheap

    with set_testing():
        yield


@pytest.fixture
def txpolicy_faults() -> Iterator[FaultInjector]:
    """
    A fault injector whose faults are all removed when the test ends.

    .. versionadded:: 0.1.0
    """
    from .testing import FaultInjector  # noqa: PLC0415 - keep the plugin's import cheap

    with FaultInjector() as injector:
        yield injector
