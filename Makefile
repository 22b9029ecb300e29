# The two commands a newcomer runs: `make demo` and `make test`. Everything else they need is set up
# on the way (venv, Debian packages, the Pulumi CLI build).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup venv system-deps pulumi-cli language-hosts conformance-clients git-hooks demo test \
	test-fast lint docs bench

setup: venv system-deps pulumi-cli language-hosts conformance-clients git-hooks

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

# Commit messages as "area: what changed" (scripts/git-hooks/commit-msg, .gitmessage). Only in a git
# checkout of this repository (not a tarball, not a parent repository); paths are relative to the
# work tree, so every worktree uses its own copy of the hook.
git-hooks:
	@if [ "$$(git rev-parse --show-toplevel 2>/dev/null)" = "$(CURDIR)" ]; then \
		git config core.hooksPath scripts/git-hooks && \
		git config commit.template .gitmessage && \
		echo "git: commit-msg hook and .gitmessage template installed"; \
	fi

# The official Go and Node SDK clients the emulator's conformance tests run (cached builds).
conformance-clients:
	scripts/install-conformance-clients.sh >/dev/null

# The YAML and Node.js language hosts, for programs in other languages than Python (the plugin).
language-hosts: pulumi-cli
	scripts/install-language-hosts.sh >/dev/null

demo: setup
	scripts/demo.sh

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

# ruff, then mypy (strict where pyproject.toml's [tool.mypy] says: the typed layers).
lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy

# The documentation site (mkdocs.yml, docs/) into build/site; --strict: a warning (a broken link or
# anchor, a docstring the API reference cannot read) fails the build.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

bench: setup
	$(PY) -m benchmarks.run
