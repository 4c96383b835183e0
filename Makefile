# agentlab: the two commands are `make reproduce` and `make test`; each sets itself up on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SCALE  ?= small
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export MPLBACKEND := Agg
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup reproduce test sync-check nbtest pytest docs bench clean-venv

setup:
	@PYTHON=$(PYTHON) bash .ci/setup

reproduce: setup
	$(BIN)/agentlab reproduce all --scale $(SCALE)

test: setup
	$(MAKE) --no-print-directory sync-check
	$(MAKE) --no-print-directory nbtest
	$(MAKE) --no-print-directory pytest

# A clean tree must stay clean after nbdev-clean and after nbdev-export (notebooks are the source of truth).
sync-check: setup
	PATH=$(CURDIR)/$(BIN):$$PATH bash .ci/nbdev-sync-check

# The notebook unit tests, run by nbdev's in-process runner under pytest (prints a pytest summary line).
nbtest: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/notebooks

pytest: setup
	$(BIN)/python -m pytest -q --ignore=tests/notebooks tests

docs: setup
	$(BIN)/agentlab docs --out _site

bench: setup
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
