# agentlab: the two commands are `make reproduce` and `make test`; each sets itself up on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SCALE  ?= small
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export MPLBACKEND := Agg
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup reproduce test sync-check nbtest pytest docs bench clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name agentlab --display-name "agentlab (.venv)" >/dev/null
	touch $(STAMP)

setup: $(STAMP)

reproduce: $(STAMP)
	$(BIN)/agentlab reproduce all --scale $(SCALE)

test: $(STAMP)
	$(MAKE) --no-print-directory sync-check
	$(MAKE) --no-print-directory nbtest
	$(MAKE) --no-print-directory pytest

# A clean tree must stay clean after nbdev-clean and after nbdev-export (notebooks are the source of truth).
sync-check: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH bash .ci/nbdev-sync-check

# The notebook unit tests, run by nbdev's in-process runner under pytest (prints a pytest summary line).
nbtest: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/notebooks

pytest: $(STAMP)
	$(BIN)/python -m pytest -q --ignore=tests/notebooks tests

docs: $(STAMP)
	$(BIN)/agentlab docs --out _site

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
