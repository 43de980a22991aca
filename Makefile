# The two commands a newcomer needs: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXTRAS := test,demo,tpm

.PHONY: test demo check lint typecheck unit fuzz-long bench bench-gateway system-deps venv clean

test: check

check: venv lint typecheck unit

system-deps:
	./scripts/system-deps

$(STAMP): pyproject.toml scripts/system-packages.txt
	./scripts/system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -q

fuzz-long: venv
	$(BIN)/pytest -q -m fuzz_long -p no:cacheprovider tests

bench: venv
	$(BIN)/python -m bench.protocol_bench

# Gateway vs plain reverse proxy vs upstream direct, under wrk (several minutes; see the module).
bench-gateway: venv
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python -m bench.gateway_bench

demo: venv
	$(BIN)/ohttp-gateway demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
