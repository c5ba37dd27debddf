# The two commands of the README: `make demo` and `make test`.
# Both need only Python 3.10+ (as $(PYTHON)) and make: the first run creates $(VENV) and
# installs the package with every extra; later runs reinstall only when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
# Checked with the basic rules only (syntax errors, undefined and unused names).
BASIC_RUFF := E9,F63,F7,F82,F401,F811,F841

.PHONY: demo test lint typecheck docs pytest bench clean
# Serial even under -j, so that pytest runs last and its summary is the last line printed.
.NOTPARALLEL:

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
		{ echo "txpolicy needs Python 3.10 or newer; run: make PYTHON=python3.X ..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/txpolicy demo

# ruff, mypy --strict, the docs build with warnings as errors, then the whole suite.
test: $(STAMP) lint typecheck docs pytest

lint: $(STAMP)
	$(BIN)/ruff check src
	$(BIN)/ruff check --select $(BASIC_RUFF) tests benchmarks docs tools

typecheck: $(STAMP)
	$(BIN)/mypy src/txpolicy
	$(BIN)/mypy --strict tests/typing/api.py
	$(BIN)/python tests/typing/check_misuse.py

# -E: always read every page afresh, since autodoc cannot see that the code changed.
docs: $(STAMP)
	$(BIN)/sphinx-build -E -W -n -q --keep-going -b html docs docs/_build/html

# pytest exits 5 when it collected no test: that fails `make test` on purpose.
pytest: $(STAMP)
	$(BIN)/pytest

# The benchmarks (never part of `make test`); the JSON goes to .benchmarks/results.json and,
# trimmed, to docs/_data/benchmarks.json, which the docs' Benchmarks page renders.
bench: $(STAMP)
	mkdir -p .benchmarks
	$(BIN)/pytest benchmarks -p no:txpolicy --benchmark-only --benchmark-json=.benchmarks/results.json --benchmark-columns=min,median,mean,rounds -o 'testpaths=benchmarks' -o 'timeout=900'
	$(BIN)/python tools/bench_to_docs.py .benchmarks/results.json docs/_data/benchmarks.json

clean:
	rm -rf $(VENV) docs/_build .benchmarks build dist
