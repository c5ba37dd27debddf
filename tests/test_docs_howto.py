"""
The how-to pages (``docs/howto/``): every Python example runs as written.

What a fenced block's info string says about it:

- ```` ```python ````: runs on SQLite. A page's blocks run in order, in one namespace, in a
  fresh working directory (the examples keep their SQLite files there).
- ```` ```python postgresql ````: runs against the PostgreSQL test server. ``DATABASE_URL``
  points at a schema made for the test (and dropped after it), so the example may create
  tables of any name. A page's blocks of this kind run in order, in their own namespace.
- ```` ```python fastapi ````: runs when FastAPI and the HTTP client of its test client are
  installed. A page's blocks of this kind run in order, in their own namespace.

Any other info string on a ``python`` block fails :func:`test_every_python_block_runs`, so
no example can go untested by accident. Blocks in other languages (``console``, ``text``,
``sql``) are not run.
"""

from __future__ import annotations

import asyncio
import re
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

ROOT = Path(__file__).parent.parent
HOWTO = ROOT / "docs" / "howto"
PAGES = sorted(path.stem for path in HOWTO.glob("*.md") if path.stem != "index")
KINDS = ("", "postgresql", "fastapi")
FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```", flags=re.MULTILINE | re.DOTALL)


def _blocks(page: str) -> list[tuple[str, str]]:
    """``(kind, source)`` of every ``python`` block of *page*, in order."""
    text = (HOWTO / f"{page}.md").read_text()
    return [(info.strip(), source) for info, source in FENCE.findall(text)]


def _of_kind(page: str, kind: str) -> list[str]:
    return [source for found, source in _blocks(page) if found == kind]


def _pages_with(kind: str) -> list[str]:
    return [page for page in PAGES if _of_kind(page, kind)]


def _run(page: str, kind: str) -> None:
    """Run the page's blocks of *kind* in one namespace; dispose the engines they leave."""
    namespace: dict[str, object] = {"__name__": f"__docs_{page}__"}
    try:
        for number, source in enumerate(_of_kind(page, kind)):
            name = f"docs/howto/{page}.md[{kind or 'sqlite'} {number}]"
            # dont_inherit: run as a module would, without this file's __future__ imports.
            code = compile(source, name, "exec", dont_inherit=True)
            exec(code, namespace)  # noqa: S102
    finally:
        for value in namespace.values():
            if isinstance(value, sa.Engine):
                value.dispose()
            elif isinstance(value, AsyncEngine):
                asyncio.run(value.dispose())


def test_the_pages_exist_and_are_listed() -> None:
    """The how-to index lists every page of the folder, and each page has SQLite examples."""
    index = (HOWTO / "index.md").read_text()
    expected = {
        "ambiguous-commits",
        "asyncio",
        "policies",
        "repository",
        "scripts",
        "services",
    }

    assert expected <= set(PAGES)
    for page in PAGES:
        assert re.search(rf"^{re.escape(page)}$", index, flags=re.MULTILINE), page
        assert _of_kind(page, ""), page


PYTHONS = {"py", "python", "python3", "pycon", "ipython", "ipython3"}


@pytest.mark.parametrize("page", PAGES)
def test_every_python_block_runs(page: str) -> None:
    """Every Python block is a ``python`` fence of a kind that one of the tests below runs
    (no ``py``, ``pycon`` or ``{code-block} python`` block escapes them)."""
    text = (HOWTO / f"{page}.md").read_text()
    infos = re.findall(r"^```(.*)$", text, flags=re.MULTILINE)
    python_blocks = [
        info for info in infos if set(re.sub(r"\{[\w-]+\}", " ", info).split()[:1]) & PYTHONS
    ]

    assert [f"python {kind}".strip() for kind, _ in _blocks(page)] == [
        " ".join(info.split()) for info in python_blocks
    ]
    assert [] == [kind for kind, _ in _blocks(page) if kind not in KINDS]


@pytest.mark.parametrize("page", PAGES)
def test_sqlite_examples_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's SQLite examples run in order, as written, and their asserts hold."""
    monkeypatch.chdir(tmp_path)

    _run(page, "")


@pytest.fixture
def pg_schema_url(postgres_url: str, pg_engine: sa.Engine) -> Iterator[str]:
    """A URL whose connections use a schema of their own; the schema is dropped afterwards."""
    schema = f"howto_{uuid.uuid4().hex[:12]}"
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.parametrize("page", _pages_with("postgresql"))
def test_postgresql_examples_run(
    page: str, pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page's PostgreSQL examples run against the real server, in a schema of their own."""
    monkeypatch.setenv("DATABASE_URL", pg_schema_url)

    _run(page, "postgresql")


@pytest.mark.parametrize("page", _pages_with("fastapi"))
def test_fastapi_examples_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's FastAPI examples run: the app is driven through FastAPI's test client."""
    pytest.importorskip("fastapi", minversion="0.121")  # Depends(..., scope="function")
    try:
        with warnings.catch_warnings():
            # Starlette's test client warns when it runs on httpx rather than httpx2.
            warnings.simplefilter("ignore", DeprecationWarning)
            import fastapi.testclient  # noqa: F401, PLC0415
    except (ImportError, RuntimeError) as exc:  # RuntimeError: no HTTP client installed
        pytest.skip(f"FastAPI's test client cannot run here: {exc}")
    monkeypatch.chdir(tmp_path)

    _run(page, "fastapi")
