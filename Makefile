# make demo   train and score the entry on freshly made synthetic data (a few minutes on a CPU)
# make test   the whole test suite
# make lint   ruff and hadolint, as CI runs them
# make bench  the benchmarks of bench/
#
# Each target first builds the virtual environment .venv from requirements*.txt (once).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO := demo

.PHONY: test demo lint bench clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint Dockerfile

bench: $(STAMP)
	$(PY) bench/bench_scorer.py
	$(PY) bench/bench_model.py --profile paper
	$(PY) bench/bench_model.py --profile quick

demo: $(STAMP)
	$(PY) -m ecg_gcn demo $(DEMO)

clean:
	rm -rf $(VENV) $(DEMO)
