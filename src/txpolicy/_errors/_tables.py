"""
The classification tables as rows, for the documentation and the command line.

The condition names are the ``# comment`` on each line of the table literals: the tables
stay plain ``code: ErrorCategory`` dicts, easy to read and review, and the docs are
rendered from the very same lines, so they cannot drift from the code.
"""

from __future__ import annotations

import ast
import functools
import inspect
import io
import tokenize
from typing import TYPE_CHECKING, NamedTuple

from .._exceptions import CATEGORY_CLASSES, ErrorCategory
from . import _cockroach, _mssql, _mysql, _oracle, _postgres, _sqlite

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType

DIALECTS = ("postgresql", "cockroachdb", "mysql", "sqlite", "mssql", "oracle")
"""The dialect names classification knows, in documentation order."""


class TableRow(NamedTuple):
    """One line of a classification table."""

    dialect: str
    code: int | str
    condition_name: str
    category: ErrorCategory


class CodeInfo(NamedTuple):
    """What the tables say about one code (``txpolicy classify``)."""

    dialect: str
    code: int | str
    condition_name: str
    category: ErrorCategory
    match: str
    """``"exact"``, ``"class XX"`` (a SQLSTATE class fallback) or ``"none"``."""

    @property
    def exception_class(self) -> type[BaseException]:
        """The exception class errors with this code are raised as."""
        return CATEGORY_CLASSES[self.category]


# (dialect, module, table name, how a key is shown)
_PRIMARY: tuple[tuple[str, ModuleType, str], ...] = (
    ("postgresql", _postgres, "SQLSTATES"),
    ("cockroachdb", _cockroach, "SQLSTATES"),
    ("mysql", _mysql, "ERRNOS"),
    ("sqlite", _sqlite, "CODES"),
    ("mssql", _mssql, "NUMBERS"),
    ("mssql", _mssql, "SQLSTATES"),
    ("oracle", _oracle, "ORA_CODES"),
    ("oracle", _oracle, "DRIVER_CODES"),
)

_FALLBACKS: tuple[tuple[str, ModuleType, str], ...] = (
    ("postgresql", _postgres, "CLASSES"),
    ("mysql", _mysql, "SQLSTATES"),
    ("mssql", _mssql, "SQLSTATES"),
)


def table_rows() -> list[TableRow]:
    """
    Every exact code of every table: ``(dialect, code, condition_name, category)``.

    Stable order: dialects as in :data:`DIALECTS`, codes in table order. Codes are strings
    for SQLSTATEs (``"40P01"``, ODBC ``"HYT00"``) and Oracle (``"ORA-00060"``,
    ``"DPY-4011"``), integers for MySQL, SQLite and SQL Server numbers.
    """
    return [
        row
        for dialect, module, name in _PRIMARY
        for row in _rows(dialect, module, name)
        if not _is_class_key(row.code)
    ]


def fallback_rows() -> list[TableRow]:
    """
    The fallbacks for codes missing from :func:`table_rows`, in the same shape.

    PostgreSQL SQLSTATE classes (``"40"``), the SQLSTATEs consulted for unknown MySQL
    numbers, and ODBC SQLSTATE classes for SQL Server.
    """
    rows = []
    for dialect, module, name in _FALLBACKS:
        for row in _rows(dialect, module, name):
            if dialect == "mssql" and not _is_class_key(row.code):
                continue  # exact ODBC SQLSTATEs are primary rows
            rows.append(row)
    return rows


def _is_class_key(code: int | str) -> bool:
    return isinstance(code, str) and len(code) == 2  # a SQLSTATE class


def _rows(dialect: str, module: ModuleType, name: str) -> Iterator[TableRow]:
    table: dict[int | str, ErrorCategory] = getattr(module, name)
    names = _comments(module.__name__, name)
    for key, category in table.items():
        shown: int | str = f"ORA-{key:05d}" if name == "ORA_CODES" else key
        yield TableRow(dialect, shown, names.get(key, ""), category)


@functools.cache
def _comments(module_name: str, table: str) -> dict[object, str]:
    """The ``# comment`` of each key of the dict literal *table* in *module_name*."""
    module = _MODULES[module_name]
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):  # no source shipped: rows keep empty names
        return {}
    comments = {
        token.start[0]: token.string.lstrip("#").strip()
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }
    found: dict[object, str] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.AnnAssign | ast.Assign):
            continue
        targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
        if not any(isinstance(t, ast.Name) and t.id == table for t in targets):
            continue
        if isinstance(node.value, ast.Dict):
            for key in node.value.keys:
                if key is not None:
                    found[ast.literal_eval(key)] = comments.get(key.lineno, "")
    return found


_MODULES = {m.__name__: m for m in (_postgres, _cockroach, _mysql, _sqlite, _mssql, _oracle)}


# -- one code, for the command line ------------------------------------------------------


def guess_dialect(code: str) -> str | None:
    """The dialect a bare *code* most likely belongs to, or None when it cannot tell."""
    text = code.strip().upper()
    if text[:4] in ("ORA-", "DPY-", "DPI-"):
        return "oracle"
    if len(text) == 5 and text.isalnum() and text.isascii():  # a SQLSTATE, even "40001"
        return "postgresql"
    if text.lstrip("-").isdigit():
        return "mysql"
    return None


def describe_code(code: str, dialect: str | None = None) -> CodeInfo:
    """
    What the tables say about *code* (a SQLSTATE, an error number or a condition name).

    Raises:
        ValueError: *dialect* is unknown, or *code* has no valid shape for the dialect.
    """
    text = code.strip()
    if dialect is None:
        dialect = guess_dialect(text)
        if dialect is None:
            raise ValueError(
                f"cannot tell the dialect of {code!r}: pass --dialect ({', '.join(DIALECTS)})"
            )
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}: expected one of {', '.join(DIALECTS)}")
    by_name = _by_condition_name(dialect, text)
    if by_name is not None:
        return by_name
    return _DESCRIBERS[dialect](text)


def _by_condition_name(dialect: str, text: str) -> CodeInfo | None:
    """Look a condition name (``deadlock_detected``, ``ER_LOCK_DEADLOCK``) up."""
    wanted = text.lower()
    if "_" not in wanted:  # condition names are identifiers: deadlock_detected, ER_..., SQLITE_...
        return None
    for row in table_rows():
        if row.dialect == dialect and row.condition_name.split(" ")[0].lower() == wanted:
            return CodeInfo(dialect, row.code, row.condition_name, row.category, "exact")
    return None


def _name(dialect: str, code: int | str) -> str:
    for row in table_rows():
        if row.dialect == dialect and row.code == code:
            return row.condition_name
    return ""


def _sqlstate(text: str, dialect: str) -> str:
    state = text.upper()
    if len(state) != 5 or not state.isalnum() or not state.isascii():
        raise ValueError(f"{dialect} codes are five-character SQLSTATEs, not {text!r}")
    return state


def _integer(text: str, dialect: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{dialect} codes are integers, not {text!r}") from None


def _describe_postgresql(text: str, dialect: str = "postgresql") -> CodeInfo:
    state = _sqlstate(text, dialect)
    if state in _postgres.SQLSTATES:
        return CodeInfo(
            dialect, state, _name("postgresql", state), _postgres.SQLSTATES[state], "exact"
        )
    prefix = state[:2]
    if prefix in _postgres.CLASSES:
        name = _comments(_postgres.__name__, "CLASSES").get(prefix, "")
        return CodeInfo(dialect, state, name, _postgres.CLASSES[prefix], f"class {prefix}")
    return CodeInfo(dialect, state, "", ErrorCategory.UNKNOWN, "none")


def _describe_cockroachdb(text: str) -> CodeInfo:
    state = _sqlstate(text, "cockroachdb")
    if state in _cockroach.SQLSTATES:
        return CodeInfo(
            "cockroachdb",
            state,
            _name("cockroachdb", state),
            _cockroach.SQLSTATES[state],
            "exact",
        )
    return _describe_postgresql(state, "cockroachdb")


def _describe_mysql(text: str) -> CodeInfo:
    errno = _integer(text, "mysql")
    if errno in _mysql.ERRNOS:
        return CodeInfo("mysql", errno, _name("mysql", errno), _mysql.ERRNOS[errno], "exact")
    if errno in _mysql.CLIENT_ERRORS:
        return CodeInfo("mysql", errno, "", ErrorCategory.CONNECTION, "client error 2xxx")
    return CodeInfo("mysql", errno, "", ErrorCategory.UNKNOWN, "none")


def _describe_sqlite(text: str) -> CodeInfo:
    code = _integer(text, "sqlite")
    if code in _sqlite.CODES:
        return CodeInfo("sqlite", code, _name("sqlite", code), _sqlite.CODES[code], "exact")
    primary = code & 0xFF
    if primary in _sqlite.CODES:
        return CodeInfo(
            "sqlite", code, _name("sqlite", primary), _sqlite.CODES[primary], f"primary {primary}"
        )
    return CodeInfo("sqlite", code, "", ErrorCategory.UNKNOWN, "none")


def _describe_mssql(text: str) -> CodeInfo:
    if text.lstrip("-").isdigit():
        number = int(text)
        found = _mssql.NUMBERS.get(number)
        if found is not None:
            return CodeInfo("mssql", number, _name("mssql", number), found, "exact")
        return CodeInfo("mssql", number, "", ErrorCategory.UNKNOWN, "none")
    state = _sqlstate(text, "mssql")
    if state in _mssql.SQLSTATES:
        return CodeInfo("mssql", state, _name("mssql", state), _mssql.SQLSTATES[state], "exact")
    prefix = state[:2]
    if prefix in _mssql.SQLSTATES:
        name = _comments(_mssql.__name__, "SQLSTATES").get(prefix, "")
        return CodeInfo("mssql", state, name, _mssql.SQLSTATES[prefix], f"class {prefix}")
    return CodeInfo("mssql", state, "", ErrorCategory.UNKNOWN, "none")


def _describe_oracle(text: str) -> CodeInfo:
    number, full_code = _oracle.parse_code(text)
    if number is None and full_code is None:
        if not text.isdigit():
            raise ValueError(f"oracle codes look like ORA-00060, DPY-4011 or 60, not {text!r}")
        number = int(text)
    shown = f"ORA-{number:05d}" if number is not None else str(full_code)
    category = _oracle.category(number, None if number is not None else full_code)
    if category is None:
        return CodeInfo("oracle", shown, "", ErrorCategory.UNKNOWN, "none")
    return CodeInfo("oracle", shown, _name("oracle", shown), category, "exact")


_DESCRIBERS = {
    "postgresql": _describe_postgresql,
    "cockroachdb": _describe_cockroachdb,
    "mysql": _describe_mysql,
    "sqlite": _describe_sqlite,
    "mssql": _describe_mssql,
    "oracle": _describe_oracle,
}
