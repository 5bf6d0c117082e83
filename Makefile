# Two commands matter: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint unit notebooks lab bench clean

install: $(STAMP)

# Re-installs only when pyproject.toml changes; otherwise this is instant.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: install
	$(BIN)/opskit demo

lint: install
	$(BIN)/ruff format --check opskit tests benchmarks
	$(BIN)/ruff check opskit tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: install
	$(BIN)/pytest -q

notebooks: install
	$(BIN)/pytest -q --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg notebooks -p no:randomly

test: lint unit notebooks

lab: install
	$(BIN)/python -m opskit.faces.lab

bench: install
	$(BIN)/python benchmarks/bench_load.py
	$(BIN)/python benchmarks/bench_reconcile.py
	$(BIN)/python benchmarks/bench_money.py
	$(BIN)/python benchmarks/bench_fleet.py
	$(BIN)/python benchmarks/bench_refresh.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
