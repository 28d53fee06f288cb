#!/usr/bin/env bash
# Run a sweep file (bench/sweep.py) on the lent GPU machine, data carried in .devdata/ (ignored by git):
#   .devdata/fashion (Fashion-MNIST IDX .gz), .devdata/wordnet (data.noun, data.verb), .devdata/MUTAG (TU files)
# device tool: carry [".devdata"], command `bash bench/sweeps/device.sh bench/sweeps/2026-12-04-device.toml`.
# Writes sweep.json and sweep.md to $OUT (or bench/sweeps/out).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
SPEC="${1:?usage: device.sh SWEEP.toml [limit seconds]}"
LIMIT="${2:-480}"
OUT="${OUT:-$ROOT/bench/sweeps/out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
SITE="$(mktemp -d /tmp/gperc-site.XXXXXX)"
export PYTHONUNBUFFERED=1 GPERC_DATA_CACHE=off GPERC_CACHE=/tmp/gperc-cache \
    GPERC_FASHION_MNIST="$ROOT/.devdata/fashion" GPERC_WORDNET="$ROOT/.devdata/wordnet"
export PYTHONPATH="$SITE:$ROOT:$ROOT/gperc_plugins/image:$ROOT/gperc_plugins/audio:$ROOT/gperc_plugins/text:$ROOT/gperc_plugins/graph"
"$PY" bench/gpu.py --dev-metadata "$SITE" >/dev/null
nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 > "$OUT/gpu.txt"
timeout "$LIMIT" "$PY" bench/sweep.py "$SPEC" --out /tmp/sweep-out 2>&1 | tee "$OUT/log.txt"
cp /tmp/sweep-out/sweep.json "$OUT/" 2>/dev/null
cp /tmp/sweep-out/sweep.md "$OUT/" 2>/dev/null
exit 0
