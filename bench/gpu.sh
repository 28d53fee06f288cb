#!/usr/bin/env bash
# The GPU check of issue 11, in one script (under 8 minutes on an H200): set up a Python with torch,
# run the core benchmark against the peers in bf16 with SDPA's flash kernels, train image/digits for a
# fixed number of steps on CUDA, run DDP and a pipeline over NCCL. Results: JSON files under $OUT
# (env.json, core.json, train.json, dist.json, summary.json) and $OUT/log.txt; bench/gpu.py does the
# parts, each under its own time limit.
#
#   bench/gpu.sh              on a CUDA machine (OUT defaults to bench/gpu-out)
#   bench/gpu.sh --dry-run    here, without a GPU: the same set-up steps, then the parts on CPU on tiny
#                             sizes (gloo instead of NCCL); what a CUDA run would install is only reported
#
# Python: $PYTHON if set; else the first of python3 and .venv/bin/python whose torch imports (and sees
# CUDA, unless --dry-run). When its torch is not the version pinned in constraints.txt and PyPI answers,
# a venv with the system's packages plus the pinned torch is made in .gpu-venv; when PyPI does not answer
# (the device machine has no network) the found Python is used as it is, and env.json says so.
# Peers (perceiver-io, perceiver-pytorch, fairscale) are installed from wheels in .whl/ when there
# (bench/gpu_wheels.sh fetches them on a machine with PyPI); a peer that is missing is skipped.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT="${OUT:-$ROOT/bench/gpu-out}"
mkdir -p "$OUT"
LOG="$OUT/log.txt"
: > "$LOG"
START=$(date +%s)
log() { echo "[gpu.sh +$(( $(date +%s) - START ))s] $*" | tee -a "$LOG" >&2; }

PINNED="$(grep -E '^torch==' constraints.txt | head -1 | cut -d= -f3)"
has_torch() {  # $1 python; succeeds when torch imports (and sees CUDA unless dry run)
    local check="import torch"
    [ "$DRY" = 1 ] || check="import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    "$1" -c "$check" >/dev/null 2>&1
}
PY=""
SETUP=""
for cand in ${PYTHON:-} python3 "$ROOT/.venv/bin/python"; do
    if command -v "$cand" >/dev/null 2>&1 && has_torch "$cand"; then PY="$(command -v "$cand")"; break; fi
done
pypi_ok() { timeout 25 "${PY:-python3}" -m pip download -q --no-deps -d "$(mktemp -d)" packaging >/dev/null 2>&1; }
if [ -n "$PY" ]; then
    FOUND="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
    SETUP="existing python $PY (torch $FOUND)"
    if [ "$FOUND" != "$PINNED" ]; then
        if pypi_ok; then
            if [ "$DRY" = 1 ]; then
                SETUP="$SETUP; would make .gpu-venv with torch==$PINNED (dry run)"
            else
                log "torch $FOUND is not the pinned $PINNED and PyPI answers: making .gpu-venv"
                "$PY" -m venv --system-site-packages "$ROOT/.gpu-venv" \
                    && timeout 300 "$ROOT/.gpu-venv/bin/python" -m pip install -q "torch==$PINNED" >>"$LOG" 2>&1 \
                    && PY="$ROOT/.gpu-venv/bin/python" && SETUP=".gpu-venv (system packages + torch==$PINNED)" \
                    || SETUP="$SETUP; installing torch==$PINNED failed, used as it is"
            fi
        else
            SETUP="$SETUP; no PyPI here, so not the pinned torch==$PINNED"
        fi
    fi
elif pypi_ok && [ "$DRY" = 0 ]; then
    log "no python with a CUDA torch: making .gpu-venv from constraints.txt"
    python3 -m venv "$ROOT/.gpu-venv" \
        && timeout 360 "$ROOT/.gpu-venv/bin/python" -m pip install -q -c constraints.txt torch numpy pluggy packaging \
           safetensors tqdm matplotlib scikit-learn torchvision einops >>"$LOG" 2>&1 \
        && PY="$ROOT/.gpu-venv/bin/python" && SETUP=".gpu-venv from constraints.txt"
fi
if [ -z "$PY" ]; then
    log "no python with torch (and CUDA) found, and no venv could be made"
    printf '{"part": "env", "status": "failed", "reason": "no python with torch%s found; PyPI unreachable or install failed"}\n' \
        "$([ "$DRY" = 1 ] || echo ' and CUDA')" > "$OUT/env.json"
    exit 1
fi
log "python: $SETUP"

# gperc from this checkout (sources on PYTHONPATH, entry points written by gpu.py), peers from .whl/
SITE="$(mktemp -d /tmp/gperc-gpu-site.XXXXXX)"
if ls "$ROOT"/.whl/*.whl >/dev/null 2>&1; then
    if true; then  # a dry run too: no network needed, into a temporary folder
        "$PY" -m pip install -q --no-index --no-deps --no-compile --ignore-requires-python --target "$SITE" "$ROOT"/.whl/*.whl >>"$LOG" 2>&1 \
            && log "installed $(ls "$ROOT"/.whl/*.whl | wc -l) wheels from .whl/" || log "installing .whl/ failed (peers may be skipped)"
    fi
fi
PLUGINS="$ROOT/gperc_plugins/image:$ROOT/gperc_plugins/audio:$ROOT/gperc_plugins/text:$ROOT/gperc_plugins/graph"
export PYTHONPATH="$SITE:$ROOT:$PLUGINS${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c 'import importlib.metadata as m; m.version("gperc-core")' >/dev/null 2>&1; then
    "$PY" bench/gpu.py --dev-metadata "$SITE" >>"$LOG" 2>&1 && log "gperc entry points written to $SITE"
fi
export GPERC_GPU_SETUP="$SETUP" PYTHONUNBUFFERED=1
if [ "$DRY" = 1 ]; then
    ARGS=(--device cpu --quick)
else
    ARGS=(--device cuda)
fi
log "running bench/gpu.py ${ARGS[*]} --out $OUT"
timeout 450 "$PY" bench/gpu.py "${ARGS[@]}" --out "$OUT" 2>&1 | tee -a "$LOG"
RC=${PIPESTATUS[0]}
rm -rf "$SITE"
log "done (exit $RC); results in $OUT"
exit "$RC"
