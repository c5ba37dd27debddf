"""``txpolicy bench``: the shape of its table and JSON on real databases (never the timings)."""

from __future__ import annotations

import argparse
import json
import re

import pytest
import sqlalchemy as sa

from tests.fix_db import url_for_driver
from txpolicy import _bench
from txpolicy._cli import main

SIDES = [
    ("happy_path", "no_transaction"),
    ("happy_path", "bare"),
    ("happy_path", "transactional"),
    ("one_retry", "hand_written"),
    ("one_retry", "transactional"),
]


def run_json(url, *, happy=60, retry=20):
    """``_bench.main`` with few iterations (the CLI path itself is tested on SQLite)."""
    args = argparse.Namespace(url=url, json=True, happy_iterations=happy, retry_iterations=retry)
    return _bench.main(args)


def check_document(document):
    """Every side is there once, timed, with a ratio to its section's baseline."""
    results = document["results"]

    assert SIDES == [(r["section"], r["name"]) for r in results]
    for result in results:
        assert result["median_us"] > 0
        assert result["ratio"] > 0
        assert result["calls"] > 0
        if result["name"] == result["baseline"]:
            assert 1.0 == result["ratio"]
    assert {"bare", "hand_written"} == {r["baseline"] for r in results}


def test_bench_json_on_sqlite_by_default(capsys):
    """``txpolicy bench --json`` measures a SQLite file and provokes a real "database is locked"."""
    status = main(["bench", "--json"])

    document = json.loads(capsys.readouterr().out)
    assert 0 == status
    check_document(document)
    assert "sqlite" == document["database"]["dialect"]
    assert "WAL, synchronous=NORMAL" == document["database"]["settings"]
    assert "lock_timeout" == document["failure"]["category"]
    assert "LockTimeoutError" == document["failure"]["exception"]
    assert "5" == document["failure"]["vendor_code"]


def test_bench_table_on_sqlite(capsys):
    """Without ``--json`` the command prints one line per side, with µs and a ratio."""
    status = _bench.main(
        argparse.Namespace(url=None, json=False, happy_iterations=60, retry_iterations=20)
    )

    out = capsys.readouterr().out
    assert 0 == status
    assert out.startswith("txpolicy bench: sqlite")
    rows = re.findall(r"^  (\S.*?)\s+([0-9.]+)\s+([0-9.]+)$", out, re.MULTILINE)
    assert [
        "the body alone, on an open session",
        "bare sessionmaker.begin() (baseline)",
        "@transactional",
        "hand-written try/except loop (baseline)",
        "@transactional (no wait)",
    ] == [label for label, _, _ in rows]
    assert all(float(us) > 0 and float(ratio) > 0 for _, us, ratio in rows)
    assert "failure: lock_timeout (code 5)" in out


def test_bench_postgres_url(postgres_url, capsys):
    """On PostgreSQL the retried failure is a real serialization failure (40001)."""
    status = run_json(postgres_url)

    document = json.loads(capsys.readouterr().out)
    assert 0 == status
    check_document(document)
    assert "postgresql" == document["database"]["dialect"]
    assert "psycopg" == document["database"]["driver"]
    assert "serialization" == document["failure"]["category"]
    assert "40001" == document["failure"]["sqlstate"]


def test_bench_mysql_url(mysql_url, capsys):
    """On MariaDB/MySQL the retried failure is a real NOWAIT lock failure."""
    status = run_json(mysql_url, happy=30, retry=10)

    document = json.loads(capsys.readouterr().out)
    assert 0 == status
    check_document(document)
    assert "lock_timeout" == document["failure"]["category"]
    assert document["failure"]["vendor_code"] in ("1205", "3572")


def test_bench_target_drops_its_table(postgres_url):
    """The table the command creates is gone once it is done."""
    target = _bench.BenchTarget(postgres_url)
    name = target.table.name
    target.close()

    engine = sa.create_engine(postgres_url)
    try:
        assert not sa.inspect(engine).has_table(name)
    finally:
        engine.dispose()


def test_bench_rejects_an_async_driver(postgres_url, capsys):
    """An async URL is refused with a clear message and status 1, before anything runs."""
    status = main(["bench", "--url", url_for_driver(postgres_url, "postgresql+asyncpg")])

    captured = capsys.readouterr()
    assert 1 == status
    assert "" == captured.out
    assert "measures sync drivers" in captured.err


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("postgresql+psycopg://postgres@127.0.0.1:1/test", id="postgresql"),
        pytest.param("sqlite:////nonexistent-directory/bench.db", id="sqlite"),
        pytest.param("sqlite://", id="sqlite-in-memory"),
    ],
)
def test_bench_reports_an_unusable_database(url, capsys):
    """A database that cannot be reached is reported on stderr with status 1, no traceback."""
    status = main(["bench", "--url", url])

    captured = capsys.readouterr()
    assert 1 == status
    assert captured.err.startswith("txpolicy bench: ")
    assert "Traceback" not in captured.err
