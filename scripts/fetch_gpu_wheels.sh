#!/usr/bin/env bash
# Download the wheels scripts/gpu_check.sh installs on the GPU machine (Python 3.12, x86-64
# Linux, torch + numpy + numba already there, no internet) into .gpu_wheels/ (gitignored).
#
#   bash scripts/fetch_gpu_wheels.sh            # then: bash scripts/gpu_check.sh OUT
#
# Pinned to the versions this repo's CPU CI runs with (pip download, binary wheels only, no
# dependency resolution: the list below is the whole closure minus what the GPU image has:
# torch, numpy, numba, llvmlite, filelock, fsspec, typing-extensions, sympy, networkx, jinja2).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${GPU_WHEELS:-.gpu_wheels}"
mkdir -p "$DEST"
# Keep this list in sync with GPU_WHEELS in scripts/gpu_check.sh (it checks the same names).
PKGS=(
  diffusers==0.42.1 transformers==5.24.0 tokenizers==0.23.3 safetensors==0.8.0 huggingface-hub==2.4.0
  hf-xet==1.8.0 httpx2==2.16.2 httpcore2==2.16.2 httpx==0.28.1 httpcore==1.0.9 h11==0.16.0 anyio==4.16.0
  idna==3.20 certifi==2026.5.20 requests==2.34.2 urllib3==2.7.0 charset-normalizer==3.4.7
  regex==2026.5.9 pyyaml==6.0.3 tqdm==4.70.1 packaging==26.4 importlib-metadata==10.2.0 zipp==4.1.2
  typer==0.29.2 click==8.5.1 shellingham==1.5.4 rich==15.0.0 pygments==2.20.0 markdown-it-py==4.3.0
  mdurl==0.1.2 lazy-importer==0.1.0 truststore==0.10.5
  trimesh==5.2.0 xatlas==0.0.11 pillow==13.0.0
  fastapi==0.165.0 starlette==1.10.0 pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0
  annotated-doc==0.0.7 typing-inspection==0.4.2 opentelemetry-api==1.45.2 uvicorn==0.54.0
  python-multipart==0.0.34
  pytest==9.0.3 pluggy==1.6.0 iniconfig==2.3.0
  diffrp-nvdiffrast
)
python3 -m pip download -q --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform linux_x86_64 --platform any \
  --only-binary=:all: --no-deps -d "$DEST" "${PKGS[@]}"
echo "wheels in $DEST: $(ls "$DEST" | wc -l) files, $(du -sh "$DEST" | cut -f1)"
