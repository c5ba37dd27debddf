"""
Database fixtures.

The URLs default to the local servers and can be overridden from the environment:

- ``TXPOLICY_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``)
- ``TXPOLICY_TEST_MYSQL_URL`` (default ``mysql+pymysql://root@127.0.0.1:3306/test``)
- ``TXPOLICY_REQUIRE_DATABASES=1`` turns "server unreachable" skips into errors (set by ``.ci/run``).
"""

from __future__ import annotations

import functools
import os
import socket
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "TXPOLICY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("TXPOLICY_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
REQUIRE_DATABASES = os.environ.get("TXPOLICY_REQUIRE_DATABASES", "") not in ("", "0", "false")


def url_for_driver(url: str, drivername: str) -> str:
    """The same server and database as *url*, through another driver."""
    return make_url(url).set(drivername=drivername).render_as_string(hide_password=False)


@functools.cache
def _reachable(url: str) -> str | None:
    """None when the server answers on its TCP port, else the reason it does not."""
    parsed = make_url(url)
    host = parsed.host or "127.0.0.1"
    port = parsed.port or (5432 if parsed.get_backend_name() == "postgresql" else 3306)
    try:
        with socket.create_connection((host, port), timeout=3):
            return None
    except OSError as exc:
        return f"{parsed.get_backend_name()} server at {host}:{port} is unreachable: {exc}"


def require_server(url: str) -> None:
    """Skip (or, under TXPOLICY_REQUIRE_DATABASES, fail) when the server of *url* is down."""
    reason = _reachable(url)
    if reason is None:
        return
    if REQUIRE_DATABASES:
        pytest.fail(f"{reason} (TXPOLICY_REQUIRE_DATABASES is set)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of the PostgreSQL test server (psycopg 3 driver)."""
    require_server(POSTGRES_URL)
    return POSTGRES_URL


@pytest.fixture(scope="session")
def mysql_url() -> str:
    """URL of the MariaDB/MySQL test server (PyMySQL driver)."""
    require_server(MYSQL_URL)
    return MYSQL_URL


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[sa.Engine]:
    """A psycopg 3 engine on the test server, disposed after the test."""
    engine = sa.create_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture
def mysql_engine(mysql_url: str) -> Iterator[sa.Engine]:
    """A PyMySQL engine on the test server, disposed after the test."""
    engine = sa.create_engine(mysql_url)
    yield engine
    engine.dispose()


@pytest.fixture
def table_name() -> str:
    """A unique table name, so tests never share state on the servers."""
    return f"t_{uuid.uuid4().hex[:12]}"
