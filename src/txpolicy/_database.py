"""PLACEHOLDER - owned by the Database work; replaced wholesale."""
from __future__ import annotations


class Database:
    pass


class AsyncDatabase:
    pass


class PoolStats:
    pass


class SessionInfo:
    pass
