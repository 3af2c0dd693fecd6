# Two commands for a fresh clone: `make demo` and `make test`. Both create .venv and install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TASTEBUD_DATA ?= $(abspath ../shared/data)

.PHONY: demo test test-slow test-all system-deps bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[all]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tastebud demo

# Browsers, PostgreSQL and wrk come from Debian; installed when missing (needs root, as in CI).
system-deps:
	bash scripts/system-deps.sh

# The default suite: everything but the tests marked slow.
test: $(STAMP) system-deps
	. scripts/start-services.sh && $(BIN)/pytest -q -m "not slow" -p no:cacheprovider

test-slow: $(STAMP) system-deps
	. scripts/start-services.sh && $(BIN)/pytest -q -m "slow" -p no:cacheprovider

test-all: test test-slow

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
