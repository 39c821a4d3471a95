# caser-gluon: the D2L Caser chapter, runnable offline in two commands.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
# mxnet-cu117 etc.: a CUDA build of mxnet 1.9.1 instead of the CPU wheel
MXNET ?= mxnet
WORKERS ?=
SERVERS ?=

.PHONY: install data train train-dist test lint bench bench-scale clean
# d2l 1.0.3 pins numpy 1.23.5, pandas 2.0.3, matplotlib 3.7.2: Python 3.8-3.11
PYTHON_OK := import sys; sys.exit(not (3, 8) <= sys.version_info[:2] <= (3, 11))

$(PY):
	@$(PYTHON) -c '$(PYTHON_OK)' || { echo "caser-gluon needs Python \
	3.8-3.11 (d2l 1.0.3 pins numpy 1.23.5); $(PYTHON) is \
	$$($(PYTHON) -V 2>&1). Run: make install PYTHON=python3.11" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip

# The package, its pinned runtime dependencies and the dev tools; then the
# fused operator compiled into the cache (skipped without a C++ compiler).
install: $(VENV)/.installed
ifneq ($(MXNET),mxnet)
	$(PY) -m pip show -q $(MXNET) 2>/dev/null || { \
	  $(PY) -m pip uninstall -y -q mxnet && \
	  $(PY) -m pip install -q $(MXNET)==1.9.1; }
endif
	$(PY) -m caser_gluon.fused
$(VENV)/.installed: setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# ML-100K into the cache (from PyPI's recbole wheel when offline).
data: install
	$(PY) -m caser_gluon.cli data

# The chapter's recipe: Caser(10), L=5, batch 4096, Adam lr 0.04, 8 epochs.
# (it fetches ML-100K itself when the cache has none)
train: install
	$(PY) -m caser_gluon.cli train $(ARGS)

# Several processes on 127.0.0.1: scheduler, servers, workers (dist_sync).
train-dist: data
	$(PY) -m caser_gluon.cli train-dist $(if $(WORKERS),--workers \
	  $(WORKERS)) $(if $(SERVERS),--servers $(SERVERS)) -- $(ARGS)

test: data
	$(PY) -m pytest -q $(ARGS)

# The chapter as a notebook, in Jupyter (lab if installed).
.PHONY: notebook notebook-html
notebook: data
	if [ -x $(VENV)/bin/jupyter-lab ]; then \
	  $(VENV)/bin/jupyter lab notebooks/caser.ipynb; \
	else $(VENV)/bin/jupyter notebook notebooks/caser.ipynb; fi

# The notebook executed with its full parameters: build/caser.html.
notebook-html: data
	mkdir -p build
	$(VENV)/bin/jupyter nbconvert --to html --execute \
	  --ExecutePreprocessor.timeout=1200 \
	  --ExecutePreprocessor.kernel_name=python3 \
	  --output-dir build notebooks/caser.ipynb

# Times this package against the chapter's code; writes benchmarks/RESULTS.md.
bench: data
	$(PY) benchmarks/bench.py $(ARGS)

# Scale: MovieLens-shaped synthetic files (cached) from 1M to 32M ratings,
# one epoch each; writes benchmarks/SCALE.md and scale.png.
bench-scale: data
	$(PY) benchmarks/bench_scale.py $(ARGS)

# The chapter's exercises and baselines over 3 seeds: experiments/RESULTS.md.
# With ARGS (e.g. --quick) the report goes to a fresh runs/experiments-*.
.PHONY: experiments
experiments: data
	$(PY) -m caser_gluon.cli experiments \
	  $(if $(ARGS),$(ARGS),--out experiments --overwrite)

lint: install
	$(VENV)/bin/ruff check caser_gluon tests benchmarks notebooks

clean:
	rm -rf runs build *.egg-info .pytest_cache
