#!/bin/bash
# bench/gpu_check.py on the lent GPU machine, from the repository root, with the folder bench/gpu_wheels.sh filled
# (carried along): its wheels into /tmp/site (PYTHONPATH), its Mosquitto behind a wrapper on PATH, then the check;
# the JSON and the log land in $OUT (the device tool brings that folder back), else in /tmp/gpu-check-out.
# Usage: bash bench/gpu_run.sh [WHEELS_DIR [gpu_check options ...]]
set -uo pipefail
WHEELS=${1:-.whl}
shift || true
DEST=${OUT:-/tmp/gpu-check-out}
mkdir -p "$DEST"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$WHEELS"/*.whl || exit 1
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
if ! command -v mosquitto >/dev/null 2>&1 && ls "$WHEELS"/deb/mosquitto_*.deb >/dev/null 2>&1; then
    ROOT=/tmp/mosquitto-root
    for deb in "$WHEELS"/deb/*.deb; do dpkg -x "$deb" "$ROOT"; done
    mkdir -p "$ROOT/bin"
    LIBS="$ROOT/usr/lib/x86_64-linux-gnu:$ROOT/lib/x86_64-linux-gnu"
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s/usr/sbin/mosquitto "$@"\n' "$LIBS" "$ROOT" > "$ROOT/bin/mosquitto"
    chmod +x "$ROOT/bin/mosquitto"
    export PATH="$ROOT/bin:$PATH"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
PYTHONUNBUFFERED=1 python3 -m bench.gpu_check "$@" 2>&1 | tee "$DEST/gpu-check.log"
status=${PIPESTATUS[0]}
newest=$(ls -t bench/results/gpu-check-*.json 2>/dev/null | head -1)
[ -n "$newest" ] && cp "$newest" "$DEST/"
exit "$status"
