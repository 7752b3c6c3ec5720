# Two commands for a fresh machine, each installing only what it needs:
#   make run   - the whole pipeline on the embedded default music, no Docker needed
#   make test  - the test suite (adds the dev extras, gbsplay, Chromium, test-only tools)
VENV ?= .venv
PY := $(VENV)/bin/python
export VENV

.PHONY: run test lint format bench venv venv-test clean model

venv:
	@bash scripts/bootstrap.sh run

venv-test:
	@bash scripts/bootstrap.sh test

run: venv
	$(VENV)/bin/gbsynth run-local

test: venv-test
	$(PY) -m pytest -q

# The default model (services/trainer/default_model/): the pre-training corpus built from
# ../shared/pretrain, then pre-training, fine-tuning on ../shared's Game Boy music,
# held-out evaluation and export (docs/model.md). MODEL_MINUTES is the training budget.
MODEL_MINUTES ?= 110
CORPUS ?= var/corpus
model: venv
	$(VENV)/bin/gbsynth corpus build ../shared/pretrain --out $(CORPUS)
	nice -n 10 $(VENV)/bin/gbsynth train --recipe default --out var/model-run \
		--corpus $(CORPUS) --shared ../shared --minutes $(MODEL_MINUTES) --threads 2

# What CI checks besides the tests: lint rules and ruff's formatting.
lint: venv-test
	$(VENV)/bin/ruff check services tests bench
	$(VENV)/bin/ruff format --check services tests bench

format: venv-test
	$(VENV)/bin/ruff format services tests bench

bench: venv-test
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
