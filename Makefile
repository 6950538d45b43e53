# Two commands matter: `make demo` (install + tag -> convert -> run an example) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_NB := example_notebooks/sweep_parameters.ipynb
DEMO_OUT := build/demo
# The JupyterLab extension: node deps from the npm registry (package-lock.json), Chromium from Debian for browser tests.
NODE_STAMP := node_modules/.installed
LABEXT := nb2pipe/labextension/package.json
LABEXT_SOURCES := $(shell find labextension/src schema style -type f 2>/dev/null) package.json
CHROMIUM ?= /usr/bin/chromium
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: install demo test lint typecheck clean labextension

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

# `pip install -e .` (hatch-jupyter-builder) has usually run `npm install` and built the extension already.
$(NODE_STAMP): package.json package-lock.json
	if [ -d node_modules ]; then npm install --no-audit --no-fund --loglevel=error; \
	else npm ci --no-audit --no-fund --loglevel=error; fi
	touch $@

# Rebuild the extension when its sources change.
$(LABEXT): $(LABEXT_SOURCES) | $(STAMP) $(NODE_STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" npm run --silent build:prod >/dev/null
	touch $@

labextension: $(LABEXT)

$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "install Debian's chromium (browser tests need $(CHROMIUM))"; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

demo: $(STAMP)
	$(VENV)/bin/nb2pipe analyze $(DEMO_NB)
	$(VENV)/bin/nb2pipe convert $(DEMO_NB) -o $(DEMO_OUT)
	$(VENV)/bin/nb2pipe check $(DEMO_NB) -o $(DEMO_OUT)
	@echo "--- run the pipeline (fresh worker processes, content-addressed cache in $(DEMO_OUT)/.nb2pipe)"
	cd $(DEMO_OUT) && ../../$(VENV)/bin/nb2pipe run sweep_parameters -p n_estimators 50
	@echo "--- run it again: nothing changed, so every stage comes from the cache"
	cd $(DEMO_OUT) && ../../$(VENV)/bin/nb2pipe run sweep_parameters -p n_estimators 50
	@echo "--- the notebook itself as a tracked papermill job, recorded in the same run store"
	$(VENV)/bin/nb2pipe job run $(DEMO_NB) -p n_estimators 50 --home $(DEMO_OUT)/.nb2pipe
	$(VENV)/bin/nb2pipe job list --home $(DEMO_OUT)/.nb2pipe
	@echo "demo: pipeline in $(DEMO_OUT)/sweep_parameters, runs in $(DEMO_OUT)/.nb2pipe"

test: $(STAMP) $(LABEXT) $(CHROMIUM)
	$(VENV)/bin/ruff check nb2pipe tests benchmarks
	$(VENV)/bin/ruff format --check nb2pipe tests benchmarks
	$(VENV)/bin/mypy
	npm run --silent typecheck
	npm test --silent
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check nb2pipe tests benchmarks
	$(VENV)/bin/ruff format --check nb2pipe tests benchmarks

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache
