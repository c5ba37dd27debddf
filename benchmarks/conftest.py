"""
Benchmark configuration: the repository root on ``sys.path`` and a closing summary.

``benchmarks/`` is not a package and is not in ``testpaths``; run it with
``.venv/bin/pytest benchmarks -p no:cacheprovider --benchmark-only -o testpaths=benchmarks``.
The root goes on ``sys.path`` so that benchmarks can provoke real errors with the same
scenarios the test suite uses (``tests/provoke.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CLASSIFY_MEDIANS: dict[str, dict[str, float]] = {}
"""``test_bench_classify.py`` fills this: ``{dialect: {benchmark label: median seconds}}``."""


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the classification medians next to each dialect's floor."""
    if not CLASSIFY_MEDIANS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("classify_error: median per call vs the floor")
    write(f"{'dialect':<12}{'case':<34}{'median':>10}{'x floor':>9}  under 1 us")
    for dialect, medians in CLASSIFY_MEDIANS.items():
        floor = medians.get("floor")
        for label, median in medians.items():
            ratio = f"{median / floor:8.1f}x" if floor else "        -"
            verdict = "" if label == "floor" else ("yes" if median < 1e-6 else "NO")
            write(f"{dialect:<12}{label:<34}{median * 1e9:8.0f}ns{ratio}  {verdict}")
