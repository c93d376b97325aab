# Two commands do everything from a fresh clone:  `make book`  and  `make test`.
# Every target sets up .venv from requirements.lock first (a no-op when the lock is unchanged).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
LOCKED := $(VENV)/.lock-installed
PKG    := $(VENV)/.package-installed
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: setup lock figures book test bench serve lint clean

setup: $(PKG)

# A changed lock rebuilds the environment from scratch, so nothing stale survives in it.
$(LOCKED): requirements.lock
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $@

$(PKG): $(LOCKED) pyproject.toml
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

# Re-resolve requirements.in into requirements.lock (needs the package index).
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -r requirements.in
	{ echo "# Exact versions of everything installed in .venv. Regenerate with \`make lock\` (from requirements.in)."; \
	  .lock-venv/bin/pip freeze --all --exclude-editable | grep -v -E '^(pip|superposition)==' \
	  | sed -E 's/^torch==([0-9.]+)\+cpu$$/torch==\1/'; } > requirements.lock
	rm -rf .lock-venv

figures: setup
	$(PY) -m superposition figures

book: figures
	@echo "The book arrives with issue 3; the weights are cached in $$($(PY) -c 'from superposition import store; print(store.folder())')."

test: figures
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

clean:
	rm -rf _build .pytest_cache .ruff_cache
