# The two commands that matter: `make run` and `make test`.
PY      := .venv/bin/python
IMAGE   := build/initramfs.img
KERNEL  := build/vmlinuz
PYTEST_ARGS ?=
NODES   ?= 1

.PHONY: run test unit host e2e lint setup image clean

setup:
	@tools/setup

image: setup
	$(PY) -m initramfs.build --out build
	$(PY) -m initramfs.bootimg --out build

# BOOT=iso: the node boots the ISO under OVMF (UEFI) instead of QEMU's -kernel.
BOOT    ?= kernel
run: image
	$(PY) -m tests.e2e.run_node --config configs/worker.yaml --nodes $(NODES) --boot $(BOOT)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

host: setup
	$(PY) -m pytest tests/host $(PYTEST_ARGS)

lint: setup
	.venv/bin/ruff check talos_init initramfs benchmarks tests tools
	.venv/bin/mypy

e2e: setup
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

clean:
	rm -rf build
