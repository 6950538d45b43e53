# Two commands matter: `make demo` (install + tag -> convert -> run an example) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_NB := example_notebooks/sweep_parameters.ipynb
DEMO_OUT := build/demo

.PHONY: install demo test lint typecheck clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/nb2pipe convert $(DEMO_NB) -o $(DEMO_OUT)
	$(VENV)/bin/nb2pipe check $(DEMO_NB) -o $(DEMO_OUT)
	$(VENV)/bin/nb2pipe analyze $(DEMO_NB)
	cd $(DEMO_OUT) && ../../$(PY) -m sweep_parameters -p n_estimators 50
	@echo "demo: pipeline written to $(DEMO_OUT)/sweep_parameters"

test: $(STAMP)
	$(VENV)/bin/ruff check nb2pipe tests benchmarks
	$(VENV)/bin/ruff format --check nb2pipe tests benchmarks
	$(VENV)/bin/mypy
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check nb2pipe tests benchmarks
	$(VENV)/bin/ruff format --check nb2pipe tests benchmarks

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache
