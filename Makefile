# The two commands of the README: `make demo` and `make test`. Each creates or reuses .venv.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.medpeft-installed

.PHONY: demo test test-slow test-all bench venv clean

venv: $(STAMP)

# Reinstall when the dependency list changes. pip reads this machine's local wheel cache;
# its "Location ... is ignored" lines are about empty index folders and are filtered out.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing medpeft and its dependencies into $(VENV) (first time: a few minutes)..."
	@free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); if [ "$$free" -lt 7 ]; then \
	  echo "warning: $$free GB free here; the venv needs about 6 GB (PyPI's x86_64 torch is a CUDA build)." >&2; fi
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
	@touch $(STAMP)

# the demo is a study: MAE pretraining once (cached), then FFT / linear probe / LoRA at 1, 10 and
# 100% of PneumoniaMNIST's labels on two worker processes, then its report
demo: $(STAMP)
	$(VENV)/bin/medpeft study run experiments/demo/study.yaml --workers 2 --report

test: $(STAMP)
	$(PY) -m pytest -q -rs --durations=10

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
