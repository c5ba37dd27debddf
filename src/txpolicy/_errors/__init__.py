"""PLACEHOLDER - owned by the classification work; replaced wholesale."""
from __future__ import annotations


def classify_error(error: BaseException) -> BaseException:
    raise NotImplementedError


def is_retryable_error(
    error: BaseException, *, during_commit: bool = False, idempotent: bool = False
) -> bool:
    raise NotImplementedError
