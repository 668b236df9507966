# make demo   train and score the entry on freshly made synthetic data (a few minutes on a CPU)
# make test   the whole test suite
# make lint   ruff and hadolint, as CI runs them
# make bench  speed: `python -m bench.benchmark` and bench/ (figures in BENCHMARKS.md)
# make bench-memory  peak memory of training on 20,000 synthetic records (minutes)
#
# Each target first builds the virtual environment .venv from requirements*.txt (once).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO := demo

.PHONY: test demo lint bench bench-memory clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint Dockerfile

bench: $(STAMP)
	$(PY) -m bench.benchmark
	$(PY) -m bench.bench_model --profile quick

bench-memory: $(STAMP)
	$(PY) -m bench.bench_memory --n 20000 --profile quick --epochs 1

demo: $(STAMP)
	$(PY) -m ecg_gcn demo $(DEMO)

clean:
	rm -rf $(VENV) $(DEMO)
