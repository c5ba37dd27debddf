"""``txpolicy demo``: the contended transfer workload, its report and its exit code."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
import sqlalchemy as sa

from txpolicy import _demo


def args(url=None, workers=4, transactions=60) -> argparse.Namespace:
    """The namespace ``_cli`` builds for ``txpolicy demo``."""
    return argparse.Namespace(url=url, workers=workers, transactions=transactions)


def demo_tables(engine: sa.Engine) -> set[str]:
    """The demo tables present on a server."""
    return {name for name in sa.inspect(engine).get_table_names() if name.startswith("txpolicy_demo_")}


def test_sqlite_demo_commits_everything_and_keeps_the_invariant(capsys):
    """The default target: every transfer commits once; the report says so; exit code 0."""
    code = _demo.main(args(workers=4, transactions=60))
    out = capsys.readouterr().out

    assert 0 == code
    assert "  committed   60\n" in out
    assert "  gave up     0\n" in out
    assert "invariant   OK" in out
    assert "p50" in out and "p95" in out and "p99" in out


def test_demo_runs_as_a_command_with_plain_progress_lines():
    """``python -m txpolicy demo``: a few progress lines on a non-terminal stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "txpolicy", "demo", "--workers", "2", "--transactions", "20"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert 0 == result.returncode, result.stderr
    assert "invariant   OK" in result.stdout
    assert "20/20 transfers, 20 committed" in result.stderr
    assert "\x1b" not in result.stderr


def test_defaults_apply_when_the_command_line_leaves_them_out(monkeypatch):
    """workers and transactions default to 8 and 400."""
    seen = {}

    def fake_plan(count, workers, seed=None):
        seen["plan"] = (count, workers)
        return [[] for _ in range(workers)]

    monkeypatch.setattr(_demo, "_plan", fake_plan)

    assert 0 == _demo.main(args(workers=None, transactions=None))
    assert (400, 8) == seen["plan"]


def test_broken_invariant_exits_non_zero(monkeypatch, capsys):
    """A balance changed behind the workload's back: BROKEN in the report, exit code 1."""
    verify = _demo.Bank.verify

    def tamper_then_verify(bank, committed):
        with bank.engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE {bank.accounts} SET balance = balance + 1 WHERE id = 1"))
        return verify(bank, committed)

    monkeypatch.setattr(_demo.Bank, "verify", tamper_then_verify)

    code = _demo.main(args(workers=2, transactions=10))
    out = capsys.readouterr().out

    assert 1 == code
    assert "invariant   BROKEN: the balances sum to 5001, not 5000" in out


def test_verify_catches_a_transfer_applied_twice_or_lost(tmp_path):
    """The ledger must be exactly the committed transfers, and the balances must follow it."""
    bank = _demo.Bank(_demo._sqlite_engine(tmp_path / "v.sqlite", 2), "v")
    bank.create()
    tally = _demo.Tally(planned=6)
    _demo.run_workload(bank, _demo._plan(6, 2, seed=1), tally)
    clean = bank.verify(tally.committed)
    lost = bank.verify(tally.committed[1:])
    twice = bank.verify([*tally.committed, tally.committed[0]])
    bank.engine.dispose()

    assert clean.ok
    assert not lost.ok
    assert not twice.ok
    assert any("ledger" in problem for problem in lost.problems)


@pytest.mark.postgres
def test_postgres_demo_through_url(postgres_url, pg_engine, capsys):
    """--url postgresql://: SERIALIZABLE transfers; invariant OK; the tables are dropped."""
    before = demo_tables(pg_engine)
    code = _demo.main(args(url=postgres_url, workers=4, transactions=40))
    out = capsys.readouterr().out

    assert 0 == code
    assert "postgresql" in out
    assert "  committed   40\n" in out
    assert "invariant   OK" in out
    assert before == demo_tables(pg_engine)


@pytest.mark.mysql
def test_mariadb_demo_through_url(mysql_url, mysql_engine, capsys):
    """--url mysql://: deadlock-prone transfers; invariant OK; the tables are dropped."""
    before = demo_tables(mysql_engine)
    code = _demo.main(args(url=mysql_url, workers=4, transactions=40))
    out = capsys.readouterr().out

    assert 0 == code
    assert "  committed   40\n" in out
    assert before == demo_tables(mysql_engine)
