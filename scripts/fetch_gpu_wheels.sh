#!/usr/bin/env bash
# Download the wheels scripts/gpu_check.sh installs on the GPU machine into .gpu_wheels/
# (gitignored; override with GPU_WHEELS=DIR). The list is scripts/gpu_wheels.txt: pinned, binary
# wheels for CPython 3.12 on x86-64 Linux, no dependency resolution (the list is the closure).
#
#   bash scripts/fetch_gpu_wheels.sh && bash scripts/gpu_check.sh OUT
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${GPU_WHEELS:-.gpu_wheels}"
mkdir -p "$DEST"
mapfile -t PKGS < <(grep -v '^\s*#' scripts/gpu_wheels.txt | grep -v '^\s*$')
python3 -m pip download -q --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform linux_x86_64 --platform any \
  --only-binary=:all: --no-deps -d "$DEST" "${PKGS[@]}" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
echo "wheels in $DEST: $(ls "$DEST"/*.whl | wc -l) files, $(du -sh "$DEST" | cut -f1) (the device tool carries at most 64 MiB with the tree)"
