# Two commands for a fresh machine:
#   make run   - the whole pipeline on the embedded default music, no Docker needed
#   make test  - the test suite
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test lint bench venv clean

venv:
	@bash scripts/bootstrap.sh

run: venv
	$(VENV)/bin/gbsynth run-local

test: venv
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check services tests bench

bench: venv
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
