# Quick start: `make demo` and `make test` each set up .venv on a fresh machine first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-all lint perf clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m pathgen.demo --out demo_out

# one torch thread per test process: two xdist workers fill the two cores; more threads only contend
test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --durations=15

test-all: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 -m "slow or not slow"

# ruff with the config in pyproject.toml ([tool.ruff]); `ruff format --check` joins once the tree is formatted
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

perf: $(STAMP)
	$(PY) benchmarks/perf/tile_throughput.py

clean:
	rm -rf demo_out .pytest_cache
