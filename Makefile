# The two set-up commands of the README:
#   make demo   creates .venv, installs skgenerative, runs `python -m skgenerative`
#   make test   creates .venv, installs skgenerative[test], runs the test suite
#
# TORCH_SPEC picks the torch requirement the install step uses. It defaults to
# plain `torch` (whatever pip resolves for your platform). CI pins it to the CPU
# wheel available on its machines (see .ci/run); on a CPU-only machine you can do
# the same:  make test TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch
PY := $(VENV)/bin/python

.PHONY: demo test venv docs benchmarks

$(PY):
	$(PYTHON) -m venv $(VENV)

venv: $(PY)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[test,benchmark]"

demo: venv
	$(PY) -m skgenerative $(ARGS)

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

docs: venv
	$(PY) -m pip install --quiet -e ".[docs]"
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

benchmarks: venv
	$(PY) benchmarks/run_all.py
