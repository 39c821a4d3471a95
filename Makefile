# caser-gluon: the D2L Caser chapter, runnable offline in two commands.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: install data train test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip

# The package, its pinned runtime dependencies and the dev tools.
install: $(VENV)/.installed
$(VENV)/.installed: setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# ML-100K into the cache (from PyPI's recbole wheel when offline).
data: install
	$(PY) -m caser_gluon.data

# The chapter's recipe: Caser(10), L=5, batch 4096, Adam lr 0.04, 8 epochs.
train: data
	$(PY) -m caser_gluon.train $(ARGS)

test: data
	$(PY) -m pytest -q $(ARGS)

lint: install
	$(VENV)/bin/ruff check caser_gluon tests

clean:
	rm -rf runs build *.egg-info .pytest_cache
