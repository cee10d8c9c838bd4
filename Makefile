# The two commands a newcomer runs: `make demo` and `make test`. Both build .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
DEMO_OUT ?= output/demo

.PHONY: setup demo test test-slow data bench clean-venv

setup:
	@VENV=$(VENV) bash tools/setup_env.sh

## Render the embedded DensePose-COCO splits (cached under $$DETECTRON2_DATASETS, default ./datasets).
data: setup
	$(PY) -m synthesis.prepare --rerender-outdated

## Set everything up, render the embedded data, look at it, then train, evaluate and apply
## DensePose R-CNN on it (CPU, about 23 minutes on 2 cores once the data are rendered).
demo: data
	$(PY) tools/visualize_data.py --dataset densepose_embedded_val --num 8 --cols 2 \
	    --out $(DEMO_OUT)/embedded_val_grid.png
	$(PY) tools/demo.py --out $(DEMO_OUT)
	@echo "demo: $(DEMO_OUT)/metrics.json, $(DEMO_OUT)/embedded_val_grid.png, $(DEMO_OUT)/overlays/"

## Fast test suite (CPU, a few minutes).
test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

## Slow end-to-end tests as well.
test-slow: setup
	$(PY) -m pytest -q -m "slow or not slow" $(PYTEST_ARGS)

## Speed benchmarks (json on stdout).
bench: setup
	$(PY) tools/benchmark_render.py
	$(PY) tools/benchmark_geodesics.py
	$(PY) tools/benchmark_stitch.py
	$(PY) tools/benchmark.py --config-file configs/embedded/densepose_rcnn_R_18_GN_FPN.yaml

clean-venv:
	rm -rf $(VENV)
