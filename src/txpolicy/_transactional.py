"""PLACEHOLDER - owned by the transactions work; replaced wholesale."""
from __future__ import annotations

from typing import Any


def transactional(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError


def attempts(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError


def current_session() -> Any:
    raise NotImplementedError


def on_commit(callback: Any) -> None:
    raise NotImplementedError
