"""
``txpolicy classify CODE [--dialect NAME]`` (CONTRACT §7), in-process and as a real process.
"""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from txpolicy._cli import main


def fields(output: str) -> dict[str, str]:
    """The ``label: value`` lines of the classify report."""
    return {
        label.strip(): value.strip()
        for label, _, value in (line.partition(":") for line in output.splitlines())
    }


@pytest.mark.parametrize(
    ("argv", "category", "exception", "retried"),
    [
        pytest.param(["40P01"], "deadlock", "txpolicy.DeadlockError", "yes", id="40P01"),
        pytest.param(["40001"], "serialization", "txpolicy.SerializationError", "yes", id="40001"),
        pytest.param(["55P03"], "lock_timeout", "txpolicy.LockTimeoutError", "yes", id="55P03"),
        pytest.param(
            ["57P01"], "connection", "txpolicy.ConnectionError",
            "yes, except during COMMIT (then the outcome is unknown: retried only if idempotent)",
            id="57P01",
        ),  # fmt: skip
        pytest.param(
            ["25006"], "read_only", "txpolicy.ReadOnlyError",
            "yes, except in a scope declared read_only=True", id="25006",
        ),  # fmt: skip
        pytest.param(["53300"], "resource", "txpolicy.ResourceError", "yes", id="53300"),
        pytest.param(["57014"], "statement_timeout", "txpolicy.TimeoutError", "no", id="57014"),
        pytest.param(
            ["40003"], "commit_unknown", "txpolicy.CommitUnknownError",
            "no, unless the call is idempotent", id="40003",
        ),  # fmt: skip
        pytest.param(["23505"], "integrity", "txpolicy.IntegrityError", "no", id="23505"),
        pytest.param(["22012"], "data", "txpolicy.DataError", "no", id="22012"),
        pytest.param(["42501"], "permission", "txpolicy.PermissionError", "no", id="42501"),
        pytest.param(["42P01"], "schema", "txpolicy.SchemaError", "no", id="42P01"),
        pytest.param(["25P02"], "unknown", "txpolicy.UnknownDatabaseError", "no", id="25P02"),
        pytest.param(["1213"], "deadlock", "txpolicy.DeadlockError", "yes", id="mysql-guessed"),
        pytest.param(
            ["4025", "--dialect", "mysql"], "integrity", "txpolicy.IntegrityError", "no",
            id="mysql-4025",
        ),  # fmt: skip
        pytest.param(
            ["517", "--dialect", "sqlite"], "serialization", "txpolicy.SerializationError", "yes",
            id="sqlite-517",
        ),  # fmt: skip
        pytest.param(
            ["5", "--dialect", "sqlite"], "lock_timeout", "txpolicy.LockTimeoutError", "yes",
            id="sqlite-5",
        ),  # fmt: skip
        pytest.param(
            ["1205", "--dialect", "mssql"], "deadlock", "txpolicy.DeadlockError", "yes",
            id="mssql-1205",
        ),  # fmt: skip
        pytest.param(
            ["HYT00", "--dialect", "mssql"], "statement_timeout", "txpolicy.TimeoutError", "no",
            id="mssql-HYT00",
        ),  # fmt: skip
        pytest.param(["ORA-08177"], "serialization", "txpolicy.SerializationError", "yes",
                     id="oracle-guessed"),  # fmt: skip
        pytest.param(
            ["40003", "--dialect", "cockroachdb"], "commit_unknown", "txpolicy.CommitUnknownError",
            "no, unless the call is idempotent", id="cockroachdb-40003",
        ),  # fmt: skip
        pytest.param(
            ["XXA00", "--dialect", "cockroachdb"], "unknown", "txpolicy.UnknownDatabaseError", "no",
            id="cockroachdb-XXA00",
        ),  # fmt: skip
    ],
)
def test_classify_in_process(
    argv: list[str], category: str, exception: str, retried: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``main(["classify", ...])`` prints the category, the class and the retry verdict."""
    status = main(["classify", *argv])

    out = fields(capsys.readouterr().out)
    assert 0 == status
    assert category == out["category"]
    assert exception == out["exception"]
    assert retried == out["retried"]


def test_classify_names_the_condition(capsys: pytest.CaptureFixture[str]) -> None:
    """The report names the condition and the dialect the code was read for."""
    main(["classify", "40p01"])

    out = fields(capsys.readouterr().out)
    assert "40P01 (deadlock_detected)" == out["code"]
    assert "postgresql" == out["dialect"]
    assert "listed" == out["match"]


def test_classify_condition_name(capsys: pytest.CaptureFixture[str]) -> None:
    """A condition name works as well as its code."""
    main(["classify", "ER_LOCK_DEADLOCK", "--dialect", "mysql"])

    out = fields(capsys.readouterr().out)
    assert "1213 (ER_LOCK_DEADLOCK)" == out["code"]
    assert "deadlock" == out["category"]


@pytest.mark.parametrize(
    ("argv", "category", "match"),
    [
        pytest.param(["53999"], "resource", "class 53", id="pg-class-53"),
        pytest.param(["40999"], "unknown", "class 40", id="pg-class-40"),
        pytest.param(["ZZ999"], "unknown", "not listed: unknown", id="pg-unknown-class"),
        pytest.param(["31337"], "unknown", "not listed: unknown", id="mysql-unknown"),
        pytest.param(["2999"], "connection", "client error 2xxx", id="mysql-client-range"),
        pytest.param(["1811", "--dialect", "sqlite"], "integrity", "listed", id="sqlite-ext"),
        pytest.param(["1285", "--dialect", "sqlite"], "lock_timeout", "primary 5",
                     id="sqlite-unknown-extended"),  # fmt: skip
        pytest.param(["08S99", "--dialect", "mssql"], "connection", "class 08", id="mssql-class"),
    ],
)
def test_classify_unknown_codes_exit_zero(
    argv: list[str], category: str, match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unlisted code gets its class fallback, or "unknown", and still exits 0."""
    status = main(["classify", *argv])

    out = fields(capsys.readouterr().out)
    assert 0 == status
    assert category == out["category"]
    assert match == out["match"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["40P01", "--dialect", "db2"], "invalid choice: 'db2'", id="bad-dialect"),
        pytest.param(["deadlock!"], "cannot tell the dialect", id="unguessable"),
        pytest.param(["abc", "--dialect", "mysql"], "mysql codes are integers", id="not-an-errno"),
        pytest.param(["4O0O1X", "--dialect", "postgresql"], "five-character", id="bad-sqlstate"),
        pytest.param([], "the following arguments are required: CODE", id="missing-code"),
    ],
)
def test_classify_bad_input_exits_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Input that names no code or dialect is an argparse error (exit status 2)."""
    with pytest.raises(SystemExit) as caught:
        main(["classify", *argv])

    assert 2 == caught.value.code
    assert message in capsys.readouterr().err


def test_no_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A command is required."""
    with pytest.raises(SystemExit) as caught:
        main([])

    assert 2 == caught.value.code
    assert "COMMAND" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "module", "expected"),
    [
        pytest.param(
            ["demo", "--url", "sqlite:///x.db", "--workers", "3", "--transactions", "7"],
            "txpolicy._demo",
            {"command": "demo", "url": "sqlite:///x.db", "workers": 3, "transactions": 7},
            id="demo",
        ),
        pytest.param(
            ["demo"], "txpolicy._demo",
            {"command": "demo", "url": None, "workers": None, "transactions": None},
            id="demo-defaults",
        ),  # fmt: skip
        pytest.param(
            ["bench", "--url", "postgresql://x", "--json"], "txpolicy._bench",
            {"command": "bench", "url": "postgresql://x", "json": True}, id="bench",
        ),  # fmt: skip
        pytest.param(["bench"], "txpolicy._bench", {"command": "bench", "url": None, "json": False},
                     id="bench-defaults"),  # fmt: skip
    ],
)
def test_demo_and_bench_delegate(
    argv: list[str], module: str, expected: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``demo`` and ``bench`` hand their parsed arguments to ``main(args)`` of their module."""
    seen = []
    fake = types.ModuleType(module)
    fake.main = lambda args: seen.append(vars(args)) or 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module, fake)

    status = main(argv)

    assert 3 == status
    assert [expected] == seen


@pytest.mark.parametrize("argv", [["demo", "--workers", "0"], ["demo", "--transactions", "x"]])
def test_demo_rejects_bad_counts(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Worker and transaction counts are positive integers, checked before anything runs."""
    with pytest.raises(SystemExit) as caught:
        main(argv)

    assert 2 == caught.value.code
    assert "argument --" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [
        pytest.param([sys.executable, "-m", "txpolicy"], id="python-m"),
        pytest.param([str(__import__("pathlib").Path(sys.executable).with_name("txpolicy"))],
                     id="console-script"),  # fmt: skip
    ],
)
def test_classify_as_a_process(command: list[str]) -> None:
    """The installed command and ``python -m txpolicy`` both answer, with the right exit codes."""
    ok = subprocess.run(
        [*command, "classify", "40P01"], capture_output=True, text=True, timeout=60, check=False
    )
    bad = subprocess.run(
        [*command, "classify", "40P01", "--dialect", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (0, "") == (ok.returncode, ok.stderr)
    assert "deadlock" == fields(ok.stdout)["category"]
    assert "txpolicy.DeadlockError" == fields(ok.stdout)["exception"]
    assert 2 == bad.returncode
    assert "invalid choice" in bad.stderr
