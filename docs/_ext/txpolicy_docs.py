"""
Sphinx extension that renders the parts of txpolicy's documentation that must not drift.

Its directives read the code (and the benchmark results) at build time:

``txpolicy-error-categories``
    The category summary: every ``ErrorCategory`` with its exception class and its
    retry verdicts, from ``CATEGORY_CLASSES``, ``DEFAULT_RETRY_ON`` and
    ``is_retryable_error``.

``txpolicy-error-tables``
    One section per database, from ``txpolicy._errors.table_rows()`` and
    ``fallback_rows()``: iterables of ``(dialect, code, condition_name, ErrorCategory)``.

``txpolicy-benchmarks``
    The results of ``make bench`` (trimmed into ``docs/_data/benchmarks.json`` by
    ``tools/bench_to_docs.py``): per group, a bar chart of the ratios to the group's
    baseline and a table of medians, ratios and the numbers in ``extra_info``.

``txpolicy-api`` (reStructuredText context only: wrap it in ``{eval-rst}`` in MyST)
    An autodoc entry for every name in a module's ``__all__``, grouped by the private
    module that defines it, so that a newly exported name is documented without
    touching ``docs/``. The build fails when an exported name (or a public method or
    property of an exported class) has no docstring. ``:also:`` lists types that public
    signatures return but the module does not export; they are documented under their
    private path until it does. ``:flat:`` drops the sections.

The functions that turn code into rows are pure and tested in ``tests/test_docs.py``.
"""

from __future__ import annotations

import ast
import enum
import html
import importlib
import inspect
import json
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, ParamSpec, TypeAlias, TypeVar

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
    ("txpolicy._markers", "Transactions"),
    ("txpolicy._policy", "Retry policy"),
    ("txpolicy._hooks", "Hooks"),
    ("txpolicy._database", "Databases and sessions"),
    ("txpolicy._stats", "Databases and sessions"),
    ("txpolicy._tracking", "Databases and sessions"),
    ("txpolicy._context", "User context"),
    ("txpolicy._errors", "Classification"),
    ("txpolicy._exceptions", "Exceptions"),
)
"""
Where an exported name is listed, by the module that defines it; the rest go last.

Within a section: functions first, then classes and the rest, each in the order of this
table and then of the source (so ``transactional`` comes before ``attempts``, and the
exceptions follow their hierarchy).
"""

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


def _section_index(obj: object) -> int:
    module = getattr(obj, "__module__", None) or ""
    for index, (prefix, _) in enumerate(API_SECTIONS):
        if module == prefix or module.startswith(prefix + "."):
            return index
    return len(API_SECTIONS)


def api_section(obj: object) -> str:
    """The API page section of an exported object, by the module that defines it."""
    index = _section_index(obj)
    return API_SECTIONS[index][1] if index < len(API_SECTIONS) else OTHER_SECTION


def reading_order(obj: object) -> tuple[int, int, str, int]:
    """Sort key: functions before classes, then the module's rank, then the source line."""
    try:
        line = inspect.getsourcelines(obj)[1]  # type: ignore[arg-type]
    except (OSError, TypeError):
        line = 0
    kind = 1 if inspect.isclass(obj) or not callable(obj) else 0
    return (kind, _section_index(obj), getattr(obj, "__module__", "") or "", line)


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


def resolve(dotted: str) -> object:
    """The object at ``package.module.name``."""
    module_name, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module_name), name)


def unexported(module: Any, also: Sequence[str]) -> list[tuple[str, str, object]]:
    """The *also* objects (dotted paths) that *module* does not export (yet)."""
    exported = {id(getattr(module, name)) for name in module.__all__}
    result = []
    for dotted in also:
        obj = resolve(dotted)
        if id(obj) not in exported:
            module_name, _, name = dotted.rpartition(".")
            result.append((module_name, name, obj))
    return result


def api_entries(
    module: Any, *, grouped: bool = True, also: Sequence[str] = ()
) -> dict[str, list[ApiEntry]]:
    """
    Every name of ``module.__all__``, grouped into sections in a fixed order.

    *also* names objects that public signatures return but *module* does not export, as
    dotted paths; each is documented under its private path until *module* exports it.
    """
    order = [title for _, title in API_SECTIONS] + [OTHER_SECTION]
    groups: dict[str, list[ApiEntry]] = {}
    named = [(module.__name__, name, getattr(module, name)) for name in module.__all__]
    everything = sorted(named + unexported(module, also), key=lambda item: reading_order(item[2]))
    for module_name, name, obj in everything:
        title = api_section(obj) if grouped else ""
        groups.setdefault(title, []).append(api_entry(module_name, name, obj))
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


def missing_docstrings(module: Any, also: Sequence[str] = ()) -> list[str]:
    """Documented names, and public methods of documented classes, that have no docstring."""
    package = module.__name__.partition(".")[0]
    missing = []
    named = [(module.__name__, name, getattr(module, name)) for name in module.__all__]
    for module_name, name, obj in named + unexported(module, also):
        if not _own_doc(obj):
            missing.append(f"{module_name}.{name}")
        if inspect.isclass(obj):
            missing.extend(
                f"{module_name}.{name} ({member_name})"
                for member_name, member in _public_members(obj, package)
                if not _own_doc(member)
            )
    return missing


def api_rst(module: Any, *, grouped: bool = True, also: Sequence[str] = ()) -> dict[str, list[str]]:
    """The reStructuredText of each API section."""
    sections: dict[str, list[str]] = {}
    for title, entries in api_entries(module, grouped=grouped, also=also).items():
        lines: list[str] = []
        for entry in entries:
            lines.append(f".. {entry.directive}:: {entry.target}")
            lines.extend(f"   {option}" for option in entry.options)
            lines.append("")
        sections[title] = lines
    return sections


class BenchRow(NamedTuple):
    """One benchmark of the results page."""

    name: str
    median: float
    ratio: float | None
    baseline: bool
    extras: dict[str, object]
    module: str


BOOKKEEPING = frozenset({"baseline", "ratio_to_baseline"})


def format_seconds(seconds: float) -> str:
    """A duration with the unit that keeps it readable."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def bench_groups(data: Mapping[str, Any]) -> dict[str, list[BenchRow]]:
    """The benchmarks of a trimmed report (``tools/bench_to_docs.py``), by group, in order."""
    groups: dict[str, list[BenchRow]] = {}
    for bench in data["benchmarks"]:
        extra = bench.get("extra_info", {})
        ratio = extra.get("ratio_to_baseline")
        row = BenchRow(
            bench["name"],
            bench["median"],
            None if ratio is None else float(ratio),
            extra.get("baseline") == bench["name"],
            {key: value for key, value in extra.items() if key not in BOOKKEEPING},
            bench.get("module", ""),
        )
        groups.setdefault(bench["group"], []).append(row)
    return groups


def ordered(groups: dict[str, list[BenchRow]], prefixes: Sequence[str]) -> list[str]:
    """Group names in the order of the first of *prefixes* each starts with; others last."""

    def rank(group: str) -> int:
        matches = [i for i, prefix in enumerate(prefixes) if group.startswith(prefix)]
        return matches[0] if matches else len(prefixes)

    return sorted(groups, key=rank)


def first_paragraph(path: Path) -> str:
    """The first paragraph of a Python file's module docstring ("" if it has none)."""
    try:
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    except (OSError, SyntaxError):
        return ""
    return " ".join(doc.split("\n\n")[0].split())


def extra_columns(rows: Sequence[BenchRow]) -> list[str]:
    """The ``extra_info`` numbers every row of a group has, in the first row's order."""
    if not rows:
        return []
    return [
        key
        for key, value in rows[0].extras.items()
        if isinstance(value, (int, float))
        and not isinstance(value, bool)
        and all(isinstance(row.extras.get(key), (int, float)) for row in rows)
    ]


def ratio_chart(rows: Sequence[BenchRow]) -> str:
    """A horizontal bar chart (SVG) of each row's ratio to the baseline, or of its median."""
    use_ratio = all(row.ratio is not None or row.baseline for row in rows)
    values = [
        (row.ratio if row.ratio is not None else 1.0) if use_ratio else row.median for row in rows
    ]
    labels = [f"{v:.2f}x" if use_ratio else format_seconds(v) for v in values]
    top = max(values) or 1.0
    label_width, bar_width, height = 300, 360, 22
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="txpolicy-chart" role="img" '
            f'width="{label_width + bar_width + 80}" height="{height * len(rows) + 4}" '
            f'font-family="sans-serif" font-size="12">'
        )
    ]
    for index, (row, value, label) in enumerate(zip(rows, values, labels, strict=True)):
        y = index * height + 2
        width = max(1.0, bar_width * value / top)
        fill = "#888" if row.baseline else "#2962ff"
        name_label = (
            f'<text x="{label_width - 6}" y="{y + 15}" text-anchor="end" '
            f'fill="currentColor">{html.escape(row.name)}</text>'
        )
        bar = (
            f'<rect x="{label_width}" y="{y + 3}" width="{width:.1f}" '
            f'height="{height - 6}" fill="{fill}"/>'
        )
        value_label = (
            f'<text x="{label_width + width + 6:.1f}" y="{y + 15}" '
            f'fill="currentColor">{html.escape(label)}</text>'
        )
        parts.extend([name_label, bar, value_label])
    parts.append("</svg>")
    return "".join(parts)


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
            "retried",
            "raised by COMMIT",
            "… with idempotent=True",
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
    headers = ("code", "condition", "category", "retried")

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
                self.xref(
                    "attr", f"txpolicy.ErrorCategory.{row.category.name}", row.category.value
                ),
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
        "also": directives.unchanged,
    }

    def run(self) -> list[nodes.Node]:
        """Generate autodoc directives and parse them here."""
        if not isinstance(self.state, RSTState):
            raise self.error("txpolicy-api generates reStructuredText: wrap it in {eval-rst}")
        module = importlib.import_module(self.arguments[0])
        also = self.options.get("also", "").split()
        missing = missing_docstrings(module, also)
        if missing:
            msg = "public names without a docstring: " + ", ".join(missing)
            raise ExtensionError(msg)
        self.env.note_dependency(inspect.getfile(module))
        grouped = "flat" not in self.options
        result: list[nodes.Node] = []
        for title, lines in api_rst(module, grouped=grouped, also=also).items():
            container = nodes.Element()
            nested_parse_with_titles(self.state, StringList(lines, "<txpolicy-api>"), container)
            if grouped:
                result.append(self.section(title, container.children))
            else:
                result.extend(container.children)
        return result


class BenchmarksDirective(_Directive):
    """Render a trimmed ``make bench`` report: per group, a ratio chart and a table."""

    required_arguments = 1
    option_spec = {"order": directives.unchanged}  # noqa: RUF012 - docutils' own API

    def run(self) -> list[nodes.Node]:
        """Build one section per benchmark group, introduced by its module's docstring."""
        relative, path = self.env.relfn2path(self.arguments[0], self.env.docname)
        self.env.note_dependency(relative)
        data = json.loads(Path(path).read_text())
        root = Path(self.env.srcdir).parent
        machine = data.get("machine", {})
        when = (data.get("datetime") or "")[:10]
        text = (
            f"Measured on {when} with {machine.get('python')} on {machine.get('system')}, "
            f"{machine.get('cpu')} ({machine.get('cores')} cores), pytest-benchmark "
            f"{data.get('pytest_benchmark')}, txpolicy commit {str(data.get('commit'))[:10]}"
            f"{' with uncommitted changes' if data.get('dirty') else ''}."
        )
        result: list[nodes.Node] = [nodes.paragraph(text, text)]
        groups = bench_groups(data)
        for group in ordered(groups, self.options.get("order", "").split()):
            rows = groups[group]
            extras = extra_columns(rows)
            about = first_paragraph(root / rows[0].module) if rows[0].module else ""
            headers = ["benchmark", "median", "ratio to baseline", *extras]
            body = [
                [
                    nodes.literal(text=row.name),
                    format_seconds(row.median),
                    "baseline"
                    if row.baseline
                    else ("" if row.ratio is None else f"{row.ratio:.2f}"),
                    *(_number(row.extras[key]) for key in extras),
                ]
                for row in rows
            ]
            children: list[nodes.Node] = [_inline_literals(about)] if about else []
            children += [nodes.raw("", ratio_chart(rows), format="html"), _table(headers, body)]
            result.append(self.section(group or "ungrouped", children))
        return result


def _inline_literals(text: str) -> nodes.paragraph:
    """A paragraph of docstring text whose ````code```` spans become literals."""
    paragraph = nodes.paragraph()
    for index, part in enumerate(text.split("``")):
        if part:
            paragraph += nodes.literal(text=part) if index % 2 else nodes.Text(part)
    return paragraph


def _number(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


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
    if what == "class" and inspect.isclass(obj) and private_constructor(obj):
        return "", None
    return signature, return_annotation


PUBLIC_MODULES = ("txpolicy", "txpolicy.instrumentation", "txpolicy.testing")


def _exported() -> set[int]:
    """The ids of every object the public modules export."""
    ids = set()
    for name in PUBLIC_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        ids.update(id(getattr(module, attribute)) for attribute in module.__all__)
    return ids


def _classes_in(hint: object) -> Iterable[type]:
    """The classes a type hint names, ``Run | None`` and ``list[Run]`` included."""
    if inspect.isclass(hint):
        yield hint
    for argument in typing.get_args(hint):
        yield from _classes_in(argument)


def private_constructor(cls: type) -> bool:
    """
    Whether building *cls* takes one of txpolicy's private types.

    Such a class is only ever built by txpolicy (``transactional()`` returns a
    ``Transactional``), so its constructor signature is not API and is not shown.
    """
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # annotations that only a type checker can evaluate
        return False
    exported = _exported()
    return any(
        c.__module__.startswith("txpolicy.") and id(c) not in exported
        for name, hint in hints.items()
        if name != "return"
        for c in _classes_in(hint)
    )


def type_variables_are_text(
    _app: object, _env: object, node: addnodes.pending_xref, contnode: nodes.Element
) -> nodes.Element | None:
    """
    Render references to txpolicy's type variables (``S``, ``P``…) as plain text.

    Signatures name them (``sessionmaker[S] -> Attempts[S]``), but a type variable is not
    something to document; any other unresolved reference still fails under ``-n``.
    """
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("txpolicy."):
        return None
    try:
        obj = resolve(target)
    except (ImportError, AttributeError, ValueError):
        return None
    if isinstance(obj, (TypeVar, ParamSpec)):
        return contnode
    return None


def setup(app: Any) -> dict[str, Any]:
    """Register the directives."""
    app.connect("autodoc-process-signature", drop_inherited_exception_signature)
    app.connect("missing-reference", type_variables_are_text)
    app.add_directive("txpolicy-error-categories", ErrorCategoriesDirective)
    app.add_directive("txpolicy-error-tables", ErrorTablesDirective)
    app.add_directive("txpolicy-api", ApiDirective)
    app.add_directive("txpolicy-benchmarks", BenchmarksDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
