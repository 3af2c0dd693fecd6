# Two commands for a fresh clone: `make demo` and `make test`. Both create .venv and install.
# Another Python: `make test PY=3.13` (finds python3.13, installs into .venv-3.13), or PYTHON=... VENV=...
PY ?=
ifeq ($(origin PYTHON),undefined)
PYTHON := $(if $(PY),$(shell bash scripts/find-python.sh $(PY)),python3)
endif
VENV ?= $(if $(PY),.venv-$(PY),.venv)
PYVER := $(if $(PYTHON),$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null))
# torch==2.13.0 (extras neural and text) is installed only on 3.11, whose CPU wheel this machine holds;
# on other Pythons pip would download the multi-GB CUDA build, so they get every other extra.
# EXTRAS must include test (pytest) for `make test`.
NO_TORCH_EXTRAS := ann,serve,scale,bench,tune,boost,test
EXTRAS ?= $(if $(filter 3.11,$(PYVER)),all,$(NO_TORCH_EXTRAS))
comma := ,
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
export HF_HUB_OFFLINE := 1
export TASTEBUD_DATA ?= $(abspath ../shared/data)

.PHONY: demo test test-slow test-all reliability system-deps lenskit-env bench lint clean

$(STAMP): pyproject.toml
	@test -n "$(PYVER)" || { echo "no working Python at '$(PYTHON)'" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tastebud demo

# Browsers, PostgreSQL and wrk come from Debian; installed when missing (needs root, as in CI).
system-deps:
	bash scripts/system-deps.sh

# LensKit's own environment (.venv-lenskit: it pins pandas 2), where the benchmarks' LensKit peers run.
lenskit-env:
	bash scripts/lenskit-env.sh

# The default suite: everything but the tests marked slow and the reliability suite.
# PYTEST_ARGS narrows or adds to it, e.g. `make test PYTEST_ARGS="tests/test_splits.py -x"`.
test: $(STAMP) system-deps
	. scripts/start-services.sh && $(BIN)/pytest -q -m "not slow" -p no:cacheprovider --ignore=tests/reliability $(PYTEST_ARGS)

test-slow: $(STAMP) system-deps
	. scripts/start-services.sh && $(BIN)/pytest -q -m "slow" -p no:cacheprovider --ignore=tests/reliability

# Faults, fuzzing, properties, security and a short wrk load run; prints one table (bounded, loopback only).
reliability: $(STAMP) system-deps
	. scripts/start-services.sh && $(BIN)/python scripts/reliability.py

test-all: test test-slow reliability

bench: $(STAMP) lenskit-env
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info

# BENCHMARKS.md sections whose measured code changed since the commit they record (exit 1 if any).
.PHONY: bench-check
bench-check:
	python3 benchmarks/check.py
