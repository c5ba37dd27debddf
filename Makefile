# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint typecheck pytest docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/txpolicy demo

test: $(STAMP) lint typecheck docs pytest

lint: $(STAMP)
	$(BIN)/ruff check src
	$(BIN)/ruff check --select E9,F63,F7,F82,F401,F811,F841 tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy src/txpolicy
	$(BIN)/mypy --strict tests/typing/api.py
	$(BIN)/python tests/typing/check_misuse.py

docs: $(STAMP)
	$(BIN)/sphinx-build -W -n -q -b html docs docs/_build/html

pytest: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	mkdir -p .benchmarks
	$(BIN)/pytest benchmarks -p no:txpolicy --benchmark-only --benchmark-json=.benchmarks/results.json --benchmark-columns=min,median,mean,rounds -o 'testpaths=benchmarks' -o 'timeout=900'

clean:
	rm -rf $(VENV) docs/_build .benchmarks build dist
