#!/bin/sh
# What bench/gpu_check.py needs on the lent GPU machine and its image lacks, fetched here into one folder to carry
# there (default .whl, which .gitignore ignores): the wheels of bench/gpu_wheels.txt for CPython 3.12 manylinux
# x86_64, and (where apt-get can fetch Debian packages) the Mosquitto broker with the libraries it links that an
# Ubuntu image may lack, for the pipeline stage. Then, on the device, from the repository root:
#     bash bench/gpu_run.sh .whl
# Usage: sh bench/gpu_wheels.sh [DIR]    (PYTHON=... picks the interpreter whose pip downloads)
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
DEST=${1:-.whl}
PYTHON=${PYTHON:-python3}
mkdir -p "$DEST"
grep -v '^#' "$HERE/gpu_wheels.txt" | grep . | xargs "$PYTHON" -m pip download -q --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DEST"
# Mosquitto 2 and what it links beyond glibc, OpenSSL, systemd and compression libraries (bench/gpu_run.sh runs it
# through a wrapper that points only it at these). Without them the pipeline stage runs with no broker.
if command -v apt-get >/dev/null 2>&1; then
    mkdir -p "$DEST/deb"
    (cd "$DEST/deb" && apt-get download -q mosquitto libwrap0 libdlt2 libnsl2 libtirpc3 libgssapi-krb5-2 \
        libkrb5-3 libk5crypto3 libkrb5support0 libkeyutils1 libcom-err2 >/dev/null) \
        || echo "note: could not fetch the Mosquitto packages (apt-get update first?); the pipeline stage will run without a broker" >&2
fi
ls "$DEST" "$DEST/deb" 2>/dev/null || true
du -sh "$DEST"
