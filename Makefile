# Two commands for a fresh clone: `make demo` and `make test`. Both create .venv and install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TASTEBUD_DATA ?= $(abspath ../shared/data)

.PHONY: demo test test-slow test-all reliability system-deps bench lint clean

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

# The default suite: everything but the tests marked slow and the reliability suite.
test: $(STAMP) system-deps
	. scripts/start-services.sh && $(BIN)/pytest -q -m "not slow" -p no:cacheprovider --ignore=tests/reliability

test-slow: $(STAMP) system-deps
	. scripts/start-services.sh && $(BIN)/pytest -q -m "slow" -p no:cacheprovider --ignore=tests/reliability

# Faults, fuzzing, properties, security and a short wrk load run; prints one table (bounded, loopback only).
reliability: $(STAMP) system-deps
	. scripts/start-services.sh && $(BIN)/python scripts/reliability.py

test-all: test test-slow reliability

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# BENCHMARKS.md sections whose measured code changed since the commit they record (exit 1 if any).
.PHONY: bench-check
bench-check:
	python3 benchmarks/check.py
