# The two set-up commands of the README: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch first: the pinned CPU wheel here; override on a GPU box (e.g. TORCH_SPEC=torch) or a Jetson (JetPack wheel)
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
# torchvision for the maskrcnn family, matching TORCH_SPEC (0.28.0 <-> torch 2.13.0). It must be the same build as
# torch: with the CPU torch, the CPU wheel (e.g. VISION_SPEC='torchvision==0.28.0+cpu' from PyTorch's CPU index via
# VISION_INDEX='--index-url ...'); PyPI's wheel is a CUDA build that cannot load its operators beside a CPU torch.
VISION_SPEC ?= torchvision==0.28.0
VISION_INDEX ?=

.PHONY: venv demo demo-model test test-fast lint bench clean install-systemd sparkplug-host maskrcnn

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

# --no-deps: torch stays exactly as installed; the check fails loudly if the operators do not load
maskrcnn: $(STAMP)
	$(BIN)/python -m pip install -q --no-deps $(VISION_INDEX) "$(VISION_SPEC)"
	$(BIN)/python -c "import torch, torchvision; torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5); \
		print('torch', torch.__version__, 'torchvision', torchvision.__version__)"

demo: $(STAMP)
	$(BIN)/edge-inspect demo

demo-model: $(STAMP)
	$(BIN)/edge-inspect model demo --out models/demo

# the Sparkplug tests' independent host (pysparkplug, which pins paho-mqtt < 2) in .venv-sparkplug-host; the tests
# build it on first use too
sparkplug-host: $(STAMP)
	$(BIN)/python -m tests.fixtures.sparkplug_host

# pytest in two workers (pytest-xdist): much of the suite waits on brokers, daemons and browsers; each test file stays
# on one worker (--dist loadfile), so its module fixtures are built once; files go out in collection order, which puts
# the long ones first (tests/conftest.py), so that the short ones even out the end.
test: $(STAMP)
	$(BIN)/ruff check agent finetune calibration tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=10

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not faults"

# as root on the target box: system user, units, /etc/edge-inspect (config + credentials), enable and start.
# INSTALL_ARGS=--no-start to only enable; INSTALL_ARGS="--root DIR" to lay the files out in an image tree.
install-systemd:
	sh systemd/install.sh $(INSTALL_ARGS)

clean:
	rm -rf $(VENV) .venv-sparkplug-host build *.egg-info
