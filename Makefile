# streamtap — developer entry points. `make run` and `make test` are all a new user needs.

VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
ARGS    ?=

# Find a Python >= 3.12 (mitmproxy 12 needs it): $(PYTHON) if given, then the usual
# names on PATH, then pyenv's installs. A candidate counts only if it really runs.
PYTHON_CANDIDATES := $(PYTHON) python3.13 python3.12 python3 \
	$(wildcard $(HOME)/.pyenv/versions/3.1[3-9]*/bin/python3) \
	$(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3) \
	$(wildcard /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9])
FIND_PYTHON = for py in $(PYTHON_CANDIDATES); do \
	  if "$$py" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then \
	    echo "$$py"; exit 0; fi; done; exit 1

.PHONY: install run test bench lint clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@py=$$($(FIND_PYTHON)) || { \
	  echo "error: streamtap needs Python >= 3.12 (for mitmproxy 12); none found." >&2; \
	  echo "       tried: $(PYTHON_CANDIDATES)" >&2; \
	  echo "       install one, or run: make PYTHON=/path/to/python3.12" >&2; exit 1; }; \
	echo "using $$py ($$($$py --version))"; \
	test -x $(BIN)/python || "$$py" -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/streamtap run $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m tests.bench docs/benchmarks.md

lint: $(STAMP)
	$(BIN)/python -m pip install --quiet ruff
	$(BIN)/ruff check proxy_core addons tests

clean:
	rm -rf $(VENV) run build *.egg-info .pytest_cache .hypothesis
