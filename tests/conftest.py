"""Shared test configuration: report header, config reset, database fixtures."""

from __future__ import annotations

import importlib.metadata

import pytest

pytest_plugins = ["tests.fix_db", "pytester"]


def pytest_report_header() -> list[str]:
    """Print the versions that decide how errors look."""
    names = ["sqlalchemy", "tenacity", "psycopg", "asyncpg", "pymysql", "aiosqlite"]
    versions = []
    for name in names:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return ["txpolicy test environment: " + ", ".join(versions)]


@pytest.fixture
def anyio_backend() -> str:
    """SQLAlchemy's asyncio extension, asyncpg and aiosqlite run on asyncio only."""
    return "asyncio"
