"""PLACEHOLDER - owned by the transactions work; replaced wholesale."""
from __future__ import annotations


class RetryPolicy:
    pass


class RetryBudget:
    pass
