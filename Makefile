# The two set-up commands of the README:
#   make demo   creates .venv, installs skgenerative, runs `python -m skgenerative`
#   make test   creates .venv, installs skgenerative[test], runs the test suite
# and two more: make docs (builds the documentation), make benchmarks (reruns them and
# rebuilds the README's benchmark table from benchmarks/results; ARGS=--quick for the
# smaller sizes; docs/benchmarks.rst says how to rerun one figure).
#
# TORCH_SPEC picks the torch requirement the install step uses. It defaults to
# plain `torch` (whatever pip resolves for your platform). CI pins it to the CPU
# wheel available on its machines (see .ci/run); on a CPU-only machine you can do
# the same:  make test TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test docs benchmarks torch

$(PY):
	$(PYTHON) -m venv $(VENV)

torch: $(PY)
	$(PIP) $(TORCH_SPEC)

demo: torch
	$(PIP) -e .
	$(PY) -m skgenerative $(ARGS)

test: torch
	$(PIP) -e ".[test]"
	$(PY) -m pytest $(PYTEST_ARGS)

docs: torch
	$(PIP) -e ".[docs]"
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

benchmarks: torch
	$(PIP) -e ".[benchmark]"
	$(PY) benchmarks/run_all.py $(ARGS)
