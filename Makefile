# Two entry points for a fresh machine (see README):
#   make demo   - set up .venv if needed, install, run the demo
#   make test   - set up .venv if needed, install, run the test suite
# The virtual environment is rebuilt only when requirements.txt or setup.cfg change.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test bench setup
setup: $(STAMP)

$(STAMP): requirements.txt setup.cfg pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -r requirements.txt
	$(VENV)/bin/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/videoact demo

# Two test processes (pytest-xdist), each test module whole in one of them so that its
# module fixtures are built once, each with its share of the cores (tests/conftest.py):
# 476-483 s against 756-801 s for one process on 2 Zen 3 cores (2026-11-30), where many tests wait on
# subprocesses, time limits and streams. One test alone:
#   .venv/bin/python -m pytest tests/test_decode.py -k webm
test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadscope

bench: $(STAMP)
	$(VENV)/bin/python tools/benchmark.py --quick
