# Everything runs from .venv, created from python3 with pinned dependencies.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: venv lint test test-fast demo e2e bench docs release-check clean matrix

$(STAMP): pyproject.toml airflow_provider_smartmca/__init__.py requirements/constraints.txt requirements/test.in
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23"
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e . -r requirements/test.in
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy airflow_provider_smartmca

# The unit suite runs in pytest-xdist workers, each with its own Airflow home and emulators
# (tests/conftest.py). Most tests wait on the emulator rather than compute, so 6 workers pay off
# even on 2 cores (the suite took 309 s with 2, 174 s with 4, 141 s with 6 there);
# TEST_WORKERS=0 runs in this process (for pdb). scripts/matrix.py reads the same variable.
export TEST_WORKERS ?= 6
XDIST := -n $(TEST_WORKERS) --dist worksteal

# Everything but e2e: lint, then every unit test.
test: lint
	$(BIN)/python -m pytest tests -m "not e2e" -q $(XDIST)

# The inner loop: the unit tests not marked slow (pytest -m slow --collect-only lists those).
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -m "not slow and not e2e" -q $(XDIST)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

e2e: $(STAMP)
	$(BIN)/python -m pytest tests/e2e -m e2e -q

# Airflow x Python matrix: a venv per cell under .venv-matrix, from requirements/airflow-3.X.txt;
# prints what each cell proves, pass/fail and seconds (scripts/matrix.py --list).
matrix:
	$(PYTHON) scripts/matrix.py

# Each benchmark prints its figures and exits non-zero when it misses a target; run them all.
bench: $(STAMP)
	-$(BIN)/python benchmarks/hook_sync_calls.py
	-$(BIN)/python benchmarks/import_cost.py
	-$(BIN)/python benchmarks/emulator_throughput.py --connections 1000 --requests 20000
	-$(BIN)/python benchmarks/trigger_polls.py --n 1000 --poll 1 --duration 10
	-$(BIN)/python benchmarks/trigger_polls.py --n 1000 --poll 1 --duration 10 --baseline

# Docs and release tools (requirements/docs.in), installed into .venv on first use.
DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): $(STAMP) requirements/docs.in
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -r requirements/docs.in
	touch $(DOCS_STAMP)

# The user guide and the API reference, as HTML in build/docs/html; any warning fails the build.
docs: $(DOCS_STAMP)
	$(BIN)/python -m sphinx -E -W --keep-going -q -b html docs build/docs/html
	@echo "open build/docs/html/index.html"

# sdist + wheel into dist/, twine check --strict, and the README's install line run with the wheel in
# fresh venvs on the lowest and the highest Airflow of the matrix (Python 3.11 and 3.13).
release-check: $(DOCS_STAMP)
	PY=$(BIN)/python bash scripts/release_check.sh

clean:
	rm -rf $(VENV) build dist *.egg-info
