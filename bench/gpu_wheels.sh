#!/usr/bin/env bash
# Fetch the peer implementations that the GPU machine lacks (it has torch, einops, transformers, but no
# network) as wheels into .whl/ (ignored by git, see .gitignore), for `bench/gpu.sh` to install there.
# Run on a machine with PyPI (PYTHON: a python with torch, setuptools and wheel, to build fairscale),
# then name .whl in the device tool's `carry`.
#   bench/gpu_wheels.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
mkdir -p .whl
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
# pure-Python wheels (perceiver-io declares Python < 3.11 but is pure Python: fetched for 3.10)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}" \
    -d .whl perceiver-pytorch==0.11.0
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.10 -d .whl perceiver-io==0.11.0
# fairscale ships an sdist only: build its (pure) wheel here, without build isolation (its setup imports torch)
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl fairscale==0.4.13
ls -la .whl
