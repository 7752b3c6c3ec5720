# Two commands for a fresh machine:
#   make run   - the whole pipeline on the embedded default music, no Docker needed
#   make test  - the test suite
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test lint bench venv clean model

venv:
	@bash scripts/bootstrap.sh

run: venv
	$(VENV)/bin/gbsynth run-local

test: venv
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

lint: venv
	$(VENV)/bin/ruff check services tests bench

bench: venv
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
