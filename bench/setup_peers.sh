#!/usr/bin/env bash
# Create .peers-venv with the peer Perceiver implementations pinned in bench/requirements-peers.txt.
# Idempotent: does nothing when the venv's stamp file is newer than the requirements.
# Usage: bench/setup_peers.sh [VENV_DIR]   (default: .peers-venv at the repository root)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$ROOT/.peers-venv}"
REQ="$ROOT/bench/requirements-peers.txt"
STAMP="$VENV/.peers-installed"
PERCEIVER_IO="perceiver-io==0.11.0"
PYTHON="${PYTHON:-python3}"

if [ -f "$STAMP" ] && [ "$STAMP" -nt "$REQ" ]; then
    exit 0
fi
echo "setting up peers venv in $VENV (torch, perceiver-io, perceiver-pytorch, transformers)" >&2
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install -q --upgrade pip
# torch first: fairscale's sdist imports torch in setup.py, so it is built without isolation.
"${PIP[@]}" install -q "$(grep -E '^torch==' "$REQ")" numpy setuptools wheel
"${PIP[@]}" install -q --no-build-isolation -r "$REQ"
# perceiver-io 0.11.0 declares Requires-Python <3.11 and pulls lightning, datasets, ...; the
# model code needs only torch, einops and fairscale, so it is installed without dependencies.
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"${PIP[@]}" download -q --no-deps --python-version 3.10 --only-binary=:all: "$PERCEIVER_IO" -d "$TMP"
"${PIP[@]}" install -q --no-deps --ignore-requires-python "$TMP"/perceiver_io-*.whl
"$VENV/bin/python" -c "import perceiver.model.core, perceiver_pytorch, transformers; print('peers ok')"
touch "$STAMP"
