# Two commands do everything from a fresh clone:  `make book`  and  `make test`.
# Every target sets up .venv from requirements.lock first (a no-op when the lock is unchanged).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
LOCKED := $(VENV)/.lock-installed
PKG    := $(VENV)/.package-installed
# `make serve` listens on this machine only, unless asked on the command line
# (`make serve HOST=0.0.0.0`): a HOST or PORT in the environment (many shells and containers
# set HOST to the machine's name) never opens it to the network.
ifneq ($(origin HOST),command line)
HOST := 127.0.0.1
endif
ifneq ($(origin PORT),command line)
PORT := 8000
endif

DEVICE ?= auto

.PHONY: setup lock figures book test bench bench-explorer serve lint clean

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
	$(PY) -m superposition figures --device $(DEVICE)

# Skips itself when nothing changed; re-runs every chapter when src/ or the weights changed.
book: figures
	$(PY) book/build.py

serve:
	@test -f _build/html/index.html || { echo "no site yet: run \`make book\` first"; exit 1; }
	@echo "serving _build/html on http://$(HOST):$(PORT)/ (Ctrl-C stops)"
	$(PYTHON) -m http.server --bind $(HOST) --directory _build/html $(PORT)

# The browser tests drive the built site, so the book is built first.
test: book
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check src tests book bench
	$(VENV)/bin/ruff format --check src tests book bench

clean:
	rm -rf _build .pytest_cache .ruff_cache

# Training speed, side by side (not part of `make test`).
bench: setup
	$(PY) bench/bench_train.py

# How fast the site's model explorer draws its first view (headless Chromium; needs the book).
bench-explorer: book
	$(PY) bench/bench_explorer.py
