# The README's two commands: `make demo` and `make test`. Both create .venv and install what is needed first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch and torchvision must come as a matching pair from the package registry: a torchvision from PyPI next to a
# different torch build (e.g. a local CPU-only wheel) fails with "operator torchvision::nms does not exist".
# The CUDA build runs fine on CPU. Ultralytics is pinned to the version the tests ran against (range: pyproject).
PINS := torch==2.14.1 torchvision==0.29.2 ultralytics==8.4.190

.PHONY: demo test test-lab test-oldest install clean gpu-kit

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(PINS) -e ".[dev]"
	$(BIN)/python -c "import torchvision.ops, torch; torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/yolo-incep demo

test: install
	$(BIN)/python -m pytest

# The lab's tests (experiments/tests/, outside pytest's testpaths): not part of `make test`.
test-lab: install
	$(BIN)/python -m pytest experiments/tests

# The oldest supported Ultralytics (plugin.SUPPORTED_RANGE) in place of the pinned one; not part of `make test`.
test-oldest: install
	$(BIN)/python -m pip install --quiet --no-deps --target .oldest ultralytics==8.4.0
	PYTHONPATH=.oldest $(BIN)/python -m pytest tests/test_plugin.py tests/test_zoo.py tests/test_fuse.py tests/test_swap.py

# What the GPU machine lacks, beside the checkout in .gpu/ (git-ignored): pinned wheels and the VisDrone sample.
# README: "Running the benchmark on a GPU machine without network".
gpu-kit: install
	$(BIN)/python -m yolo_incep.bench.machine

clean:
	rm -rf $(VENV) .oldest runs .pytest_cache
