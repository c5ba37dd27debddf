"""
Sphinx extension that renders the parts of txpolicy's documentation that must not drift.

Two directives read the code at build time:

``txpolicy-error-categories``
    The category summary: every ``ErrorCategory`` with its exception class and its
    retry verdicts, from ``CATEGORY_CLASSES``, ``DEFAULT_RETRY_ON`` and
    ``is_retryable_error``.

``txpolicy-error-tables``
    One section per database, from ``txpolicy._errors.table_rows()`` and
    ``fallback_rows()``: iterables of ``(dialect, code, condition_name, ErrorCategory)``.

``txpolicy-api`` (reStructuredText context only: wrap it in ``{eval-rst}`` in MyST)
    An autodoc entry for every name in a module's ``__all__``, grouped by the private
    module that defines it, so that a newly exported name is documented without
    touching ``docs/``. The build fails when an exported name (or a public method or
    property of an exported class) has no docstring.

The functions that turn code into rows are pure and tested in ``tests/test_docs.py``.
"""

from __future__ import annotations

import enum
import importlib
import inspect
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.parsers.rst.states import RSTState
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.errors import ExtensionError
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

DIALECT_TITLES: dict[str, str] = {
    "postgresql": "PostgreSQL",
    "cockroachdb": "CockroachDB",
    "mysql": "MySQL and MariaDB",
    "sqlite": "SQLite",
    "mssql": "SQL Server",
    "oracle": "Oracle",
}
"""Section titles of the per-database tables; an unknown dialect is shown as it is."""

API_SECTIONS: tuple[tuple[str, str], ...] = (
    ("txpolicy._transactional", "Transactions"),
    ("txpolicy._policy", "Retry policy"),
    ("txpolicy._database", "Databases and sessions"),
    ("txpolicy._context", "User context"),
    ("txpolicy._errors", "Classification"),
    ("txpolicy._exceptions", "Exceptions"),
)
"""Where an exported name is listed, by the module that defines it; the rest go last."""

OTHER_SECTION = "Other names"

Cell: TypeAlias = "str | nodes.Node"


class ErrorRow(NamedTuple):
    """One row of a per-database table."""

    code: str
    condition: str
    category: Any
    exception: str
    retried: str


class CategoryRow(NamedTuple):
    """One row of the category summary."""

    category: Any
    exception: str
    retried: str
    during_commit: str
    during_commit_idempotent: str


class ApiEntry(NamedTuple):
    """One autodoc directive of the API reference."""

    directive: str
    target: str
    options: tuple[str, ...]


# --- pure helpers -------------------------------------------------------------------------


def yes_no(value: bool) -> str:
    """Render a verdict."""
    return "yes" if value else "no"


def error_tables(
    rows: Iterable[tuple[str, object, str, Any]],
    category_classes: Mapping[Any, type[BaseException]],
    retry_on: Iterable[Any],
) -> dict[str, list[ErrorRow]]:
    """Group ``table_rows()`` by dialect, in order of first appearance, keeping row order."""
    retried = frozenset(retry_on)
    tables: dict[str, list[ErrorRow]] = {}
    for dialect, code, condition, category in rows:
        exception = category_classes[category].__name__
        row = ErrorRow(str(code), condition, category, exception, yes_no(category in retried))
        tables.setdefault(dialect, []).append(row)
    return tables


def category_rows(
    category_classes: Mapping[Any, type[BaseException]],
    retry_on: Iterable[Any],
    is_retryable: Callable[..., bool],
) -> list[CategoryRow]:
    """One row per category, its COMMIT verdicts asked of ``is_retryable_error`` itself."""
    retried = frozenset(retry_on)
    result = []
    for category, cls in category_classes.items():
        error = cls("example", category=category)  # type: ignore[call-arg]
        during_commit = yes_no(is_retryable(error, during_commit=True))
        idempotent = yes_no(is_retryable(error, during_commit=True, idempotent=True))
        result.append(
            CategoryRow(
                category, cls.__name__, yes_no(category in retried), during_commit, idempotent
            )
        )
    return result


def api_section(obj: object) -> str:
    """The API page section of an exported object, by the module that defines it."""
    module = getattr(obj, "__module__", None) or ""
    for prefix, title in API_SECTIONS:
        if module == prefix or module.startswith(prefix + "."):
            return title
    return OTHER_SECTION


def api_entry(module_name: str, name: str, obj: object) -> ApiEntry:
    """The autodoc directive that documents *obj* exported as ``module_name.name``."""
    target = f"{module_name}.{name}"
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return ApiEntry("autoexception", target, (":members:", ":show-inheritance:"))
    if inspect.isclass(obj) and issubclass(obj, enum.Enum):
        return ApiEntry("autoclass", target, (":members:", ":undoc-members:"))
    if inspect.isclass(obj):
        # Public methods may live on a private base class (``_BaseDatabase``).
        return ApiEntry("autoclass", target, (":members:", ":inherited-members:"))
    if callable(obj):
        return ApiEntry("autofunction", target, ())
    return ApiEntry("autodata", target, ())


def api_entries(module: Any, *, grouped: bool = True) -> dict[str, list[ApiEntry]]:
    """Every name of ``module.__all__``, grouped into sections in a fixed order."""
    order = [title for _, title in API_SECTIONS] + [OTHER_SECTION]
    groups: dict[str, list[ApiEntry]] = {}
    for name in module.__all__:
        obj = getattr(module, name)
        title = api_section(obj) if grouped else ""
        groups.setdefault(title, []).append(api_entry(module.__name__, name, obj))
    if not grouped:
        return groups
    return {title: groups[title] for title in order if title in groups}


def _own_doc(obj: object) -> str:
    """The object's own docstring; a class never inherits one here, unlike inspect.getdoc."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    return doc.strip() if isinstance(doc, str) else ""


def _in_package(cls: type, package: str) -> bool:
    return cls.__module__ == package or cls.__module__.startswith(package + ".")


def _public_members(cls: type, package: str) -> Iterable[tuple[str, object]]:
    """
    Public methods and properties of *cls*, as its API page lists them.

    Exceptions and enums list what they define themselves; other classes also list what
    they inherit from the classes of their own *package* (``:inherited-members:``).
    """
    own_only = issubclass(cls, (BaseException, enum.Enum))
    bases = [cls] if own_only else [c for c in cls.__mro__ if _in_package(c, package)]
    seen: set[str] = set()
    for base in bases:
        for name, member in vars(base).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            function = (
                member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
            )
            if inspect.isfunction(function) or isinstance(member, property):
                yield f"{base.__qualname__}.{name}", function


def is_placeholder(obj: object) -> bool:
    """
    Whether *obj* comes from a module still marked ``PLACEHOLDER`` by the lead.

    Transitional: such modules are being replaced; their names are rendered as
    "not implemented yet" instead of failing the build.
    """
    module = inspect.getmodule(obj)
    return module is not None and _own_doc(module).startswith("PLACEHOLDER")


def missing_docstrings(module: Any) -> list[str]:
    """Exported names, and public methods of exported classes, that have no docstring."""
    package = module.__name__.partition(".")[0]
    missing = []
    for name in module.__all__:
        obj = getattr(module, name)
        if is_placeholder(obj):
            continue
        if not _own_doc(obj):
            missing.append(f"{module.__name__}.{name}")
        if inspect.isclass(obj):
            missing.extend(
                f"{module.__name__}.{name} ({member_name})"
                for member_name, member in _public_members(obj, package)
                if not _own_doc(member)
            )
    return missing


def api_rst(module: Any, *, grouped: bool = True) -> dict[str, list[str]]:
    """The reStructuredText of each API section."""
    sections: dict[str, list[str]] = {}
    for title, entries in api_entries(module, grouped=grouped).items():
        lines: list[str] = []
        for entry in entries:
            lines.append(f".. {entry.directive}:: {entry.target}")
            lines.extend(f"   {option}" for option in entry.options)
            lines.append("")
        sections[title] = lines
    return sections


# --- docutils nodes -----------------------------------------------------------------------


def _text(content: Cell) -> str:
    return content if isinstance(content, str) else content.astext()


def _cell(content: Cell) -> nodes.entry:
    entry = nodes.entry()
    paragraph = nodes.paragraph()
    paragraph += nodes.Text(content) if isinstance(content, str) else content
    entry += paragraph
    return entry


def _table(headers: Sequence[str], rows: Iterable[Sequence[Cell]]) -> nodes.table:
    """A plain docutils table; its cells are text or ready-made inline nodes."""
    rows = [list(values) for values in rows]
    table = nodes.table(classes=["txpolicy-table"])
    tgroup = nodes.tgroup(cols=len(headers))
    table += tgroup
    for column, header in enumerate(headers):
        texts = [header] + [_text(values[column]) for values in rows]
        tgroup += nodes.colspec(colwidth=max(len(text) for text in texts) + 2)
    thead = nodes.thead()
    tgroup += thead
    header_row = nodes.row()
    header_row.extend(_cell(header) for header in headers)
    thead += header_row
    tbody = nodes.tbody()
    tgroup += tbody
    for values in rows:
        row = nodes.row()
        row.extend(_cell(value) for value in values)
        tbody += row
    return table


def _not_yet(text: str) -> nodes.Node:
    note = nodes.note()
    note += nodes.paragraph(text, text)
    return note


class _Directive(SphinxDirective):
    """Helpers shared by the directives."""

    def xref(self, reftype: str, target: str, text: str) -> addnodes.pending_xref:
        """A cross-reference into the API page, checked by ``-n`` like a written one."""
        ref = addnodes.pending_xref(
            "",
            nodes.literal(text, text),
            refdomain="py",
            reftype=reftype,
            reftarget=target,
            refexplicit=True,
            refwarn=True,
        )
        ref["refdoc"] = self.env.docname
        return ref

    def section(self, title: str, children: Iterable[nodes.Node]) -> nodes.section:
        """A section that shows in the page's table of contents."""
        section = nodes.section()
        section += nodes.title(title, title)
        section.extend(children)
        section["names"].append(nodes.fully_normalize_name(title))
        self.state.document.note_implicit_target(section, section)
        return section


class ErrorCategoriesDirective(_Directive):
    """Render the category summary from ``txpolicy._exceptions`` and ``is_retryable_error``."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        """Build one table."""
        from txpolicy import _exceptions, is_retryable_error  # noqa: PLC0415

        rows = category_rows(
            _exceptions.CATEGORY_CLASSES, _exceptions.DEFAULT_RETRY_ON, is_retryable_error
        )
        headers = [
            "category",
            "value",
            "exception",
            "retried by default",
            "raised by COMMIT",
            "raised by COMMIT, idempotent=True",
        ]
        body = [
            [
                self.xref("attr", f"txpolicy.ErrorCategory.{row.category.name}", row.category.name),
                nodes.literal(text=f'"{row.category.value}"'),
                self.xref("exc", f"txpolicy.{row.exception}", row.exception),
                row.retried,
                row.during_commit,
                row.during_commit_idempotent,
            ]
            for row in rows
        ]
        return [_table(headers, body)]


class ErrorTablesDirective(_Directive):
    """
    Render one section per database from ``txpolicy._errors``.

    Each section holds the table of exact codes (``table_rows()``) and, when the database
    has any, the table of fallbacks consulted for codes missing from it (``fallback_rows()``:
    SQLSTATE classes, and the SQLSTATEs behind unknown MySQL numbers).
    """

    has_content = False
    headers = ("code", "condition", "category", "exception", "retried by default")

    def run(self) -> list[nodes.Node]:
        """Build the sections."""
        from txpolicy import _errors, _exceptions  # noqa: PLC0415

        classes, retry_on = _exceptions.CATEGORY_CLASSES, _exceptions.DEFAULT_RETRY_ON
        tables = error_tables(_errors.table_rows(), classes, retry_on)
        fallbacks = error_tables(_errors.fallback_rows(), classes, retry_on)
        if not tables:
            raise self.error("txpolicy._errors.table_rows() returned no rows")
        result: list[nodes.Node] = []
        for dialect in [*tables, *(d for d in fallbacks if d not in tables)]:
            children: list[nodes.Node] = []
            if dialect in tables:
                children.append(self.table(tables[dialect]))
            if dialect in fallbacks:
                text = "Codes that are not listed above fall back to:"
                children += [nodes.paragraph(text, text), self.table(fallbacks[dialect])]
            result.append(self.section(DIALECT_TITLES.get(dialect, dialect), children))
        return result

    def table(self, rows: Sequence[ErrorRow]) -> nodes.table:
        """One table of codes."""
        body = [
            [
                nodes.literal(text=row.code),
                row.condition,
                nodes.literal(text=row.category.value),
                self.xref("exc", f"txpolicy.{row.exception}", row.exception),
                row.retried,
            ]
            for row in rows
        ]
        return _table(self.headers, body)


class ApiDirective(_Directive):
    """Document every name in a module's ``__all__`` with autodoc."""

    required_arguments = 1
    option_spec = {  # noqa: RUF012 - docutils' own API
        "flat": directives.flag,
        "if-exists": directives.flag,
    }

    def run(self) -> list[nodes.Node]:
        """Generate autodoc directives and parse them here."""
        if not isinstance(self.state, RSTState):
            raise self.error("txpolicy-api generates reStructuredText: wrap it in {eval-rst}")
        name = self.arguments[0]
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if "if-exists" not in self.options or error.name != name:
                raise
            return [_not_yet(f"{name} is not in this build yet.")]
        missing = missing_docstrings(module)
        if missing:
            msg = "public names without a docstring: " + ", ".join(missing)
            raise ExtensionError(msg)
        self.env.note_dependency(inspect.getfile(module))
        grouped = "flat" not in self.options
        result: list[nodes.Node] = []
        for title, lines in api_rst(module, grouped=grouped).items():
            container = nodes.Element()
            nested_parse_with_titles(self.state, StringList(lines, "<txpolicy-api>"), container)
            if grouped:
                result.append(self.section(title, container.children))
            else:
                result.extend(container.children)
        return result


def drop_inherited_exception_signature(
    _app: object,
    what: str,
    _name: str,
    obj: object,
    _options: object,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None]:
    """
    Show the constructor signature of an exception only where the class defines it.

    Every TransactionError subclass takes the same keywords; repeating them on each of
    thirteen classes hides what differs, which is the docstring.
    """
    if what == "exception" and inspect.isclass(obj) and "__init__" not in vars(obj):
        inherited = next(base for base in obj.__mro__ if "__init__" in vars(base))
        if inherited.__module__.startswith("txpolicy."):
            return "", None
    return signature, return_annotation


def setup(app: Any) -> dict[str, Any]:
    """Register the directives."""
    app.connect("autodoc-process-signature", drop_inherited_exception_signature)
    app.add_directive("txpolicy-error-categories", ErrorCategoriesDirective)
    app.add_directive("txpolicy-error-tables", ErrorTablesDirective)
    app.add_directive("txpolicy-api", ApiDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
