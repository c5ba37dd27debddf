# ruff: noqa: INP001 - a script run by `make bench`, not a package module
"""
Copy the results of ``make bench`` into the documentation, trimmed to what the page shows.

Usage: ``python tools/bench_to_docs.py [.benchmarks/results.json] [docs/_data/benchmarks.json]``
(``make bench`` runs it). The output keeps, per benchmark, its group, name, module, median,
minimum, mean, rounds and ``extra_info`` (where ``benchmarks/_support.py`` stores the
baseline and the ratio to it), plus when and on what the run was made; raw timings are
dropped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

STATS = ("median", "min", "mean", "rounds")
MACHINE = ("python_implementation", "python_version", "system", "machine", "cpu")


def trim(results: dict[str, Any]) -> dict[str, Any]:
    """The parts of a pytest-benchmark JSON report that ``docs/benchmarks.md`` renders."""
    machine = results.get("machine_info", {})
    cpu = machine.get("cpu", {})
    return {
        "datetime": results.get("datetime"),
        "pytest_benchmark": results.get("version"),
        "commit": (results.get("commit_info") or {}).get("id"),
        "dirty": bool((results.get("commit_info") or {}).get("dirty")),
        "machine": {
            "python": f"{machine.get('python_implementation', '')} "
            f"{machine.get('python_version', '')}".strip(),
            "system": machine.get("system"),
            "cpu": cpu.get("brand_raw") or machine.get("processor") or machine.get("machine"),
            "cores": cpu.get("count"),
        },
        "benchmarks": [
            {
                "group": bench.get("group") or "",
                "name": bench["name"],
                "module": bench.get("fullname", "").partition("::")[0],
                **{key: bench["stats"][key] for key in STATS},
                "extra_info": bench.get("extra_info", {}),
            }
            for bench in results.get("benchmarks", [])
        ],
    }


def main(argv: list[str]) -> int:
    """Read the report, write the trimmed copy."""
    source = Path(argv[0] if argv else ".benchmarks/results.json")
    target = Path(argv[1] if len(argv) > 1 else "docs/_data/benchmarks.json")
    trimmed = trim(json.loads(source.read_text()))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(trimmed, indent=1, sort_keys=True) + "\n")
    print(f"{target}: {len(trimmed['benchmarks'])} benchmarks from {source}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
