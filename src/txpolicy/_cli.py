"""
The ``txpolicy`` command (also ``python -m txpolicy``).

``classify`` is answered here from the classification tables; ``demo`` and ``bench`` live
in their own modules (``txpolicy._demo``, ``txpolicy._bench``), imported only when run.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import TYPE_CHECKING

from ._errors import describe_code
from ._errors._tables import DIALECTS, CodeInfo
from ._exceptions import DEFAULT_RETRY_ON, ErrorCategory

if TYPE_CHECKING:
    from collections.abc import Sequence

_VERDICTS = {
    ErrorCategory.CONNECTION: (
        "yes, except during COMMIT (then the outcome is unknown: retried only if idempotent)"
    ),
    ErrorCategory.READ_ONLY: "yes, except in a scope declared read_only=True",
    ErrorCategory.COMMIT_UNKNOWN: "no, unless the call is idempotent",
}


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the ``txpolicy`` command line.

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The exit status.

    .. versionadded:: 0.1.0
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "classify":
        return _classify(args)
    return _delegate(args.command, args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="txpolicy",
        description="Database transactions that survive the failures real databases produce.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run a contended transfer workload through transactional()",
        description="A contended transfer workload through transactional(); prints commits, "
        "retries per category, give-ups, latency percentiles and the balance invariant.",
    )
    demo.add_argument("--url", help="database URL (default: an embedded SQLite file)")
    demo.add_argument("--workers", type=_positive, metavar="N", help="concurrent workers")
    demo.add_argument("--transactions", type=_positive, metavar="N", help="transfers to run")

    classify = commands.add_parser(  # its errors are reported with its own usage line
        "classify",
        help="show how an error code is classified",
        description="Print the category, the exception class and the retry verdict for a "
        "SQLSTATE or a vendor error code.",
    )
    classify.add_argument(
        "code",
        metavar="CODE",
        help="a SQLSTATE (40P01), an error number (1213), ORA-00060, or a condition name",
    )
    classify.add_argument(
        "--dialect",
        choices=DIALECTS,
        help="the database the code comes from (default: guessed; five characters -> "
        "postgresql, an integer -> mysql, ORA-/DPY- -> oracle)",
    )
    classify.set_defaults(classify_parser=classify)

    bench = commands.add_parser(
        "bench",
        help="measure the per-call cost of the happy path and of one retry",
        description="Per-call costs of the happy path and of one retry against a database.",
    )
    bench.add_argument("--url", help="database URL (default: SQLite)")
    bench.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def _positive(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _classify(args: argparse.Namespace) -> int:
    try:
        info = describe_code(args.code, args.dialect)
    except ValueError as exc:
        args.classify_parser.error(str(exc))  # exits with status 2
    sys.stdout.write(_render(info))
    return 0


def _render(info: CodeInfo) -> str:
    """The classify report, one ``label: value`` per line."""
    name = f" ({info.condition_name})" if info.condition_name else ""
    match = {"exact": "listed", "none": "not listed: unknown"}.get(info.match, info.match)
    cls = info.exception_class
    verdict = _VERDICTS.get(info.category)
    if verdict is None:
        verdict = "yes" if info.category in DEFAULT_RETRY_ON else "no"
    lines = [
        ("code", f"{info.code}{name}"),
        ("dialect", info.dialect),
        ("match", match),
        ("category", info.category.value),
        ("exception", f"txpolicy.{cls.__name__}"),
        ("retried", verdict),
    ]
    return "".join(f"{label + ':':<11}{value}\n" for label, value in lines)


def _delegate(command: str, args: argparse.Namespace) -> int:
    """Run ``txpolicy._<command>.main(args)``, imported only now."""
    module_name = f"txpolicy._{command}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        sys.stderr.write(f"txpolicy {command}: not available in this build\n")
        return 1
    status = module.main(args)
    return int(status or 0)
