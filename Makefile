# The two commands: `make run` (the study on the offline default) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KERNEL := image-study-kit
ARGS ?=

.PHONY: run test lab bench clean-venv

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Image study kit (.venv)" >/dev/null
	# Outputs never reach git: nbstripout cleans notebooks as they are staged (.gitattributes names the filter).
	if git rev-parse --git-dir >/dev/null 2>&1; then $(VENV)/bin/nbstripout --install --attributes .gitattributes; fi
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m helpers.pipeline $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Jupyter refuses root unless told; containers and cloud notebooks often run as root.
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_train.py

clean-venv:
	rm -rf $(VENV)
