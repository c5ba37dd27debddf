"""The documentation: the generated pages are right, and the examples run as written."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest

from txpolicy._exceptions import CATEGORY_CLASSES, DEFAULT_RETRY_ON, ErrorCategory

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
sys.path[:0] = [str(DOCS / "_ext"), str(ROOT / "tools")]

import bench_to_docs  # noqa: E402
import txpolicy_docs  # noqa: E402

FAKE_ROWS = [
    ("postgresql", "40P01", "deadlock_detected", ErrorCategory.DEADLOCK),
    ("mysql", 1213, "ER_LOCK_DEADLOCK", ErrorCategory.DEADLOCK),
    ("postgresql", "40003", "statement_completion_unknown", ErrorCategory.COMMIT_UNKNOWN),
    ("oceanbase", "X1", "made_up", ErrorCategory.UNKNOWN),
]


def test_error_tables_group_by_dialect_in_order() -> None:
    """Rows are grouped per dialect in order of first appearance, keeping their own order,
    with the exception class and the default verdict of each category."""
    expected = {
        "postgresql": [
            ("40P01", "deadlock_detected", ErrorCategory.DEADLOCK, "DeadlockError", "yes"),
            (
                "40003",
                "statement_completion_unknown",
                ErrorCategory.COMMIT_UNKNOWN,
                "CommitUnknownError",
                "no",
            ),
        ],
        "mysql": [("1213", "ER_LOCK_DEADLOCK", ErrorCategory.DEADLOCK, "DeadlockError", "yes")],
        "oceanbase": [("X1", "made_up", ErrorCategory.UNKNOWN, "UnknownDatabaseError", "no")],
    }

    actual = txpolicy_docs.error_tables(FAKE_ROWS, CATEGORY_CLASSES, DEFAULT_RETRY_ON)

    assert expected == {dialect: [tuple(row) for row in rows] for dialect, rows in actual.items()}
    assert list(expected) == list(actual)


def test_category_rows_ask_the_checker() -> None:
    """The COMMIT columns are whatever ``is_retryable_error`` answers, asked with the
    keywords of the contract; every category gets a row."""
    calls = []

    def checker(error: BaseException, *, during_commit: bool, idempotent: bool = False) -> bool:
        calls.append((type(error), during_commit, idempotent))
        return idempotent

    rows = txpolicy_docs.category_rows(CATEGORY_CLASSES, DEFAULT_RETRY_ON, checker)

    assert list(ErrorCategory) == [row.category for row in rows]
    assert {("no", "yes")} == {(row.during_commit, row.during_commit_idempotent) for row in rows}
    assert [(cls, True, False) for cls in CATEGORY_CLASSES.values()] == calls[::2]
    assert ["yes"] * 6 + ["no"] * 7 == [row.retried for row in rows]


def _write_module(path: Path, name: str, source: str) -> None:
    (path / f"{name}.py").write_text(source)


def _build(tmp_path: Path, index: str, files: dict[str, str] | None = None) -> str:
    """Build a one-page Sphinx project that uses the extension; return its text output."""
    from sphinx.application import Sphinx
    from sphinx.util.docutils import docutils_namespace

    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(DOCS / '_ext')!r})\n"
        "extensions = ['sphinx.ext.autodoc', 'txpolicy_docs']\n"
    )
    (src / "index.rst").write_text(index)
    for name, content in (files or {}).items():
        (src / name).write_text(content)
    warnings = io.StringIO()
    with docutils_namespace():  # each build registers its nodes and directives afresh
        app = Sphinx(
            srcdir=src,
            confdir=src,
            outdir=tmp_path / "out",
            doctreedir=tmp_path / "doctrees",
            buildername="text",
            status=None,
            warning=warnings,
            freshenv=True,
        )
        app.build()
    assert "" == warnings.getvalue()
    return (tmp_path / "out" / "index.txt").read_text()


def test_error_tables_directive_renders_one_section_per_dialect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directive renders ``table_rows()``: a titled table per database, followed by
    the database's fallbacks from ``fallback_rows()`` where it has any."""
    from txpolicy import _errors

    fallbacks = [("mysql", "40", "transaction rollback", ErrorCategory.SERIALIZATION)]
    monkeypatch.setattr(_errors, "table_rows", lambda: iter(FAKE_ROWS))
    monkeypatch.setattr(_errors, "fallback_rows", lambda: iter(fallbacks))

    targets = "".join(
        f".. py:attribute:: txpolicy.ErrorCategory.{c.name}\n\n" for c in ErrorCategory
    )

    text = _build(tmp_path, f"Errors\n======\n\n{targets}.. txpolicy-error-tables::\n")

    titles = re.findall(r"^(\S.*)\n[=-]+$", text, flags=re.MULTILINE)
    assert ["PostgreSQL", "MySQL and MariaDB", "oceanbase"] == titles
    mysql = text[text.index("MySQL and MariaDB") : text.index("oceanbase")]
    assert "fall back to" in mysql
    assert "transaction rollback" in mysql
    assert 1 == text.count("fall back to")
    for row in txpolicy_docs.error_tables(FAKE_ROWS, CATEGORY_CLASSES, DEFAULT_RETRY_ON)[
        "postgresql"
    ]:
        assert row.code in text
        assert row.condition in text
        assert row.category.value in text


def test_api_directive_documents_every_exported_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every name of ``__all__`` is rendered, whatever module defines it."""
    _write_module(
        tmp_path,
        "fake_api",
        '"""A fake public module."""\n'
        '__all__ = ["Thing", "make_thing"]\n'
        'class Thing:\n    """A documented class."""\n'
        '    def use(self) -> None:\n        """Use it."""\n'
        'def make_thing() -> Thing:\n    """Make a thing."""\n    return Thing()\n',
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    text = _build(tmp_path, "API\n===\n\n.. txpolicy-api:: fake_api\n")

    for expected in ["class fake_api.Thing", "A documented class.", "Use it.", "Make a thing."]:
        assert expected in text
    assert "Other names" in text


def test_api_directive_fails_the_build_on_a_missing_docstring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exported name, or a public method of an exported class, without a docstring
    stops the build and is named."""
    from sphinx.errors import ExtensionError

    _write_module(
        tmp_path,
        "fake_undocumented",
        '__all__ = ["Thing", "helper"]\n'
        'class Thing:\n    """Documented."""\n    def use(self) -> None:\n        pass\n'
        "def helper() -> None:\n    pass\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    with pytest.raises(ExtensionError) as info:
        _build(tmp_path, "API\n===\n\n.. txpolicy-api:: fake_undocumented\n")

    assert "fake_undocumented.Thing (Thing.use), fake_undocumented.helper" in str(info.value)


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize(
    "page",
    [
        pytest.param("docs/getting-started.md", id="getting-started"),
        pytest.param("README.md", id="readme"),
    ],
)
def test_examples_run(page: str) -> None:
    """Every ``python`` block of the page runs, in order, in one namespace, as written
    (they use SQLite, so they need no server)."""
    blocks = _python_blocks(ROOT / page)
    namespace: dict[str, object] = {"__name__": "__docs__"}

    for number, block in enumerate(blocks):
        exec(compile(block, f"{page}[{number}]", "exec"), namespace)  # noqa: S102

    assert blocks


FAKE_REPORT = {
    "datetime": "2026-11-30T12:00:00.000000+00:00",
    "version": "5.3.1",
    "commit_info": {"id": "0123456789abcdef"},
    "machine_info": {
        "python_implementation": "CPython",
        "python_version": "3.11.7",
        "system": "Linux",
        "machine": "x86_64",
        "cpu": {"brand_raw": "Some CPU", "count": 2},
    },
    "benchmarks": [
        {
            "group": "happy-sync",
            "name": "bare",
            "fullname": "benchmarks/test_bench_fake.py::test_sync[bare]",
            "stats": {"median": 20e-6, "min": 18e-6, "mean": 21e-6, "rounds": 100, "data": [1.0]},
            "extra_info": {"baseline": "bare", "ratio_to_baseline": 1.0},
        },
        {
            "group": "happy-sync",
            "name": "transactional",
            "fullname": "benchmarks/test_bench_fake.py::test_sync[transactional]",
            "stats": {"median": 25e-6, "min": 22e-6, "mean": 26e-6, "rounds": 100, "data": [1.0]},
            "extra_info": {"baseline": "bare", "ratio_to_baseline": 1.25},
        },
        {
            "group": "contended",
            "name": "transactional_deadlock",
            "stats": {"median": 2.5, "min": 2.0, "mean": 2.6, "rounds": 4, "data": [1.0]},
            "extra_info": {"goodput": 120.5, "give_ups": 0, "note": "text"},
        },
    ],
}


def test_bench_to_docs_keeps_what_the_page_shows() -> None:
    """The trimmed report keeps medians, rounds, extra_info and the machine; no raw data."""
    trimmed = bench_to_docs.trim(FAKE_REPORT)

    assert {"python": "CPython 3.11.7", "system": "Linux", "cpu": "Some CPU", "cores": 2} == (
        trimmed["machine"]
    )
    assert ["bare", "transactional", "transactional_deadlock"] == [
        bench["name"] for bench in trimmed["benchmarks"]
    ]
    assert {
        "group": "happy-sync",
        "name": "transactional",
        "module": "benchmarks/test_bench_fake.py",
        "median": 25e-6,
        "min": 22e-6,
        "mean": 26e-6,
        "rounds": 100,
        "extra_info": {"baseline": "bare", "ratio_to_baseline": 1.25},
    } == trimmed["benchmarks"][1]


def test_bench_groups_and_columns() -> None:
    """Rows are grouped, the baseline is marked, and only numbers every row has become columns."""
    groups = txpolicy_docs.bench_groups(bench_to_docs.trim(FAKE_REPORT))

    assert ["happy-sync", "contended"] == list(groups)
    assert [("bare", True, 1.0), ("transactional", False, 1.25)] == [
        (row.name, row.baseline, row.ratio) for row in groups["happy-sync"]
    ]
    assert ["goodput", "give_ups"] == txpolicy_docs.extra_columns(groups["contended"])
    assert [] == txpolicy_docs.extra_columns(groups["happy-sync"])


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        pytest.param(12.34e-6, "12.3 µs", id="microseconds"),
        pytest.param(0.0456, "45.6 ms", id="milliseconds"),
        pytest.param(2.5, "2.50 s", id="seconds"),
    ],
)
def test_format_seconds(seconds: float, expected: str) -> None:
    """Durations are shown in the unit that keeps them readable."""
    assert expected == txpolicy_docs.format_seconds(seconds)


def test_benchmarks_directive_renders_chart_and_table(tmp_path: Path) -> None:
    """The page shows the machine, and per group a bar chart and a table."""
    data = json.dumps(bench_to_docs.trim(FAKE_REPORT))

    text = _build(
        tmp_path, "Bench\n=====\n\n.. txpolicy-benchmarks:: data.json\n", {"data.json": data}
    )

    assert "Measured on 2026-11-30 with CPython 3.11.7 on Linux, Some CPU (2 cores)" in " ".join(
        text.split()
    )
    for expected in ["happy-sync", "contended", "25.0 µs", "1.25", "baseline", "goodput", "120"]:
        assert expected in text
