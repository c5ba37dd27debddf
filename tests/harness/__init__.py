"""
Test infrastructure for faults and scale.

- :mod:`tests.harness.pgproxy` — a PostgreSQL-protocol-aware TCP proxy that cuts connections
  before a COMMIT, after the server committed but before the client hears it, or in the middle
  of a transaction.
- :mod:`tests.harness.replication` — a real streaming-replication pair (primary + standby
  from ``pg_basebackup``) on free loopback ports, with promotion, crash and fencing.
- :mod:`tests.harness.pgbouncer` — PgBouncer in transaction pooling mode in front of the test
  server.

The helpers below open each of them for a test and close it afterwards; test modules wrap them
in their own fixtures (``with proxy_for(postgres_url) as proxy: yield proxy``). Where a harness
cannot run on this machine the test is skipped with the reason — or fails when
``TXPOLICY_REQUIRE_DATABASES`` is set (CI), so a missing install step cannot hide.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NoReturn

import pytest
from sqlalchemy.engine import make_url

from tests.fix_db import REQUIRE_DATABASES

from .pgbouncer import PgBouncer, pgbouncer_unavailable
from .pgproxy import CutEvent, CutRule, Moment, PgProxy, ProxyArm
from .replication import ReplicationPair, replication_unavailable

__all__ = [
    "CutEvent",
    "CutRule",
    "Moment",
    "PgBouncer",
    "PgProxy",
    "ProxyArm",
    "ReplicationPair",
    "pgbouncer_for",
    "proxy_for",
    "replication_pair",
    "unavailable",
]


def unavailable(reason: str) -> NoReturn:
    """Skip the test for *reason*, or fail it under ``TXPOLICY_REQUIRE_DATABASES`` (CI)."""
    if REQUIRE_DATABASES:
        pytest.fail(f"{reason} (TXPOLICY_REQUIRE_DATABASES is set)", pytrace=False)
    pytest.skip(reason)


def _host_port(url: str) -> tuple[str, int]:
    parsed = make_url(url)
    return parsed.host or "127.0.0.1", parsed.port or 5432


@contextlib.contextmanager
def proxy_for(postgres_url: str) -> Iterator[PgProxy]:
    """A :class:`PgProxy` in front of the server of *postgres_url*, closed afterwards."""
    proxy = PgProxy(_host_port(postgres_url))
    try:
        yield proxy
    finally:
        proxy.close()


@contextlib.contextmanager
def replication_pair(*, synchronous: bool = True) -> Iterator[ReplicationPair]:
    """A started :class:`ReplicationPair`, torn down afterwards (skips where it cannot run)."""
    reason = replication_unavailable()
    if reason is not None:
        unavailable(reason)
    pair = ReplicationPair(synchronous=synchronous)
    try:
        pair.start()
        yield pair
    finally:
        pair.teardown()


@contextlib.contextmanager
def pgbouncer_for(postgres_url: str, **options: object) -> Iterator[PgBouncer]:
    """A started :class:`PgBouncer` in front of the server of *postgres_url* (skips where absent)."""
    reason = pgbouncer_unavailable()
    if reason is not None:
        unavailable(reason)
    bouncer = PgBouncer(upstream_port=_host_port(postgres_url)[1], **options)  # type: ignore[arg-type]
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()
