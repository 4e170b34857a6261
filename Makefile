# streamtap — developer entry points. `make run` and `make test` are all a new user needs.

VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
ARGS    ?=
# pytest-xdist processes for make test; 0 runs the tests in pytest's own process.
WORKERS ?= auto
LOCKS   := requirements/runtime.lock requirements/dev.lock requirements/bootstrap.lock
UV      := $(BIN)/uv

# Find a Python >= 3.12 (mitmproxy 12 needs it): only $(PYTHON) when given, else the usual
# names on PATH, then pyenv's installs. A candidate counts only if it really runs (pyenv's
# shims exist on PATH but fail unless pyenv selects that version).
ifdef PYTHON
PYTHON_CANDIDATES := $(PYTHON)
else
PYTHON_CANDIDATES := python3.13 python3.12 python3 \
	$(wildcard $(HOME)/.pyenv/versions/3.1[3-9]*/bin/python3) \
	$(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3) \
	$(wildcard /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9])
endif
FIND_PYTHON = for py in $(PYTHON_CANDIDATES); do \
	  if "$$py" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then \
	    echo "$$py"; exit 0; fi; done; exit 1
NEED_PYTHON = py=$$($(FIND_PYTHON)) || { \
	  echo "error: streamtap needs Python >= 3.12 (for mitmproxy 12); none found." >&2; \
	  echo "       tried: $(PYTHON_CANDIDATES)" >&2; \
	  echo "       install one, or run: make PYTHON=/path/to/python3.12" >&2; exit 1; }

# What uv's lock command shares between runs: every platform, Python 3.12 and later,
# hashes of every file, PyPI only (never this machine's mirrors).
UV_COMPILE = $(UV) pip compile --quiet --universal --python-version 3.12 \
	--python $(BIN)/python --generate-hashes --no-cache \
	--index-url https://pypi.org/simple --custom-compile-command "make lock"

.PHONY: install run test test-fast bench lint lock upgrade check-deps check-deps-lowest clean

install: $(STAMP)

# uv from its own lock, then exactly the locked, tested set (hash-checked; anything else
# in the venv is removed), then the project itself, resolving nothing more.
$(STAMP): setup.cfg pyproject.toml $(LOCKS)
	@$(NEED_PYTHON); echo "using $$py ($$($$py --version))"; \
	test -x $(BIN)/python || "$$py" -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/bootstrap.lock
	$(UV) pip sync --quiet --python $(BIN)/python --require-hashes requirements/dev.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/streamtap run $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(WORKERS) $(ARGS)

# The suite without the end-to-end tests (real processes): for the second interpreter.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n $(WORKERS) -m 'not e2e' $(ARGS)

# The figures go to run/benchmarks.md (untracked); BENCH_OUT=docs/benchmarks.md make bench
# updates the documented ones, deliberately. BENCH_RUNS=N: medians of N runs (default 3).
bench: $(STAMP)
	$(BIN)/python -m tests.bench $(or $(BENCH_OUT),run/benchmarks.md)

# deptry reads requirement files, not setup.cfg: they are written from it first
# (pyproject.toml, [tool.deptry]).
lint: $(STAMP)
	$(BIN)/ruff check proxy_core addons tests
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m tests.deps.declared build/deptry
	$(BIN)/deptry .
	$(BIN)/deptry tests --exclude '$$^' --ignore DEP002 \
	  --requirements-files build/deptry/all.txt --requirements-files-dev build/deptry/none.txt

# Re-resolve the locks from setup.cfg (keeping what is pinned where it still fits),
# install the result and test it. `make upgrade` moves every pin to the newest allowed.
lock: $(STAMP)
	$(UV_COMPILE) $(UV_ARGS) setup.cfg requirements/lock.in --extra sinks -o requirements/runtime.lock
	$(UV_COMPILE) $(UV_ARGS) setup.cfg requirements/lock.in requirements/tools.in --extra test --extra sinks \
	  -c requirements/runtime.lock -o requirements/dev.lock
	$(UV_COMPILE) requirements/bootstrap.in -c requirements/dev.lock -o requirements/bootstrap.lock
	$(MAKE) install test

upgrade:
	$(MAKE) lock UV_ARGS=--upgrade

# Are the declared dependencies enough? A fresh venv from setup.cfg alone (no extras,
# no lock, no pip cache or mirror of this machine), every module imported, and
# `streamtap run` up to a healthy /healthz.
check-deps:
	@$(NEED_PYTHON); "$$py" -m tests.deps.fresh_install

# Are the lower bounds true? The lowest version setup.cfg allows of every direct
# dependency (the test extra's too), in a venv of its own, and the whole suite on it.
LOWEST := build/venv-lowest
check-deps-lowest: $(STAMP)
	@$(NEED_PYTHON); rm -rf $(LOWEST); $(UV) venv --quiet --python "$$py" $(LOWEST)
	$(UV) pip compile --quiet --resolution lowest-direct --python $(LOWEST)/bin/python --no-cache \
	  --index-url https://pypi.org/simple setup.cfg --extra test --extra sinks -o build/lowest.txt
	$(UV) pip sync --quiet --python $(LOWEST)/bin/python build/lowest.txt
	$(UV) pip install --quiet --python $(LOWEST)/bin/python --no-deps -e .
	$(LOWEST)/bin/python -m pytest -q -n $(WORKERS) -p no:cacheprovider $(ARGS)

clean:
	rm -rf $(VENV) run build *.egg-info .pytest_cache .hypothesis
