# The two commands: `make run` (the study on the committed sample; the first run installs .venv from the package
# index, later runs need no network) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KERNEL := image-study-kit
ARGS ?=

.PHONY: run test test-fast lab lab-check browser bench clean-venv

# The stamp makes the install run once: again only when requirements.txt or pyproject.toml change (then pip
# finds the pinned versions installed and needs the index only for a new one); tests/test_offline.py checks it.
# scripts/install_room.py first refuses, in one sentence, a disk that cannot hold the ~6.4 GB install.
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) scripts/install_room.py $(VENV)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Image study kit (.venv)" >/dev/null
	# Outputs never reach git: nbstripout cleans notebooks as they are staged (.gitattributes names the filter).
	if git rev-parse --git-dir >/dev/null 2>&1; then $(VENV)/bin/nbstripout --install --attributes .gitattributes; fi
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m helpers.pipeline $(ARGS)

test: $(STAMP) browser
	$(PY) -m pytest $(PYTEST_ARGS)

# The quick loop while changing code: the unit tests alone (no notebooks, browser, end-to-end runs or multi-cycle
# training; see the markers in pyproject.toml).
test-fast: $(STAMP)
	$(PY) -m pytest -o addopts="-ra" -m "not notebook and not e2e and not browser and not integration" tests $(PYTEST_ARGS)

# The browser check (tests/test_lab.py) drives Debian's chromium: installed here when it is missing and we can
# (root with apt-get, as in CI); elsewhere that one test is skipped and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser check (tests/test_lab.py)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed: the browser check will be skipped"; \
	  else echo "chromium is not installed (that needs root and apt-get): the browser check will be skipped"; fi; }

# JupyterLab on LAB_PORT (default 8888), or the next free port with a message when it is taken;
# --allow-root where we run as root (containers). LAB_ARGS pass through to jupyter lab.
LAB_PORT ?= 8888
lab: $(STAMP)
	$(PY) scripts/lab.py --port $(LAB_PORT) -- $(LAB_ARGS)

# Every notebook through JupyterLab's Run All in headless Chromium, on the committed defaults, in a fresh
# STUDY_HOME (LAB_HOME=dir to keep it); screenshots land in <home>/runs/default/screenshots/.
lab-check: $(STAMP) browser
	$(PY) scripts/lab_check.py $(if $(LAB_HOME),--home $(LAB_HOME))

bench: $(STAMP)
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_loader.py
	$(PY) benchmarks/bench_channels_last.py
	$(PY) benchmarks/bench_vs_bare.py

clean-venv:
	rm -rf $(VENV)
