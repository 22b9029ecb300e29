# The two commands a newcomer runs: `make demo` and `make test`. Everything else they need is set up
# on the way (venv, Debian packages, the Pulumi CLI build).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup venv system-deps pulumi-cli conformance-clients demo test test-fast lint bench

setup: venv system-deps pulumi-cli conformance-clients

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

system-deps:
	scripts/install-system-deps.sh

pulumi-cli:
	scripts/install-pulumi-cli.sh >/dev/null

# The official Go and Node SDK clients the emulator's conformance tests run (cached builds).
conformance-clients:
	scripts/install-conformance-clients.sh >/dev/null

demo: setup
	scripts/demo.sh

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: setup
	$(PY) -m benchmarks.run
