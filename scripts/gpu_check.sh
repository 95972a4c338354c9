#!/usr/bin/env bash
# The GPU check (issue 13): one prepared run for a CUDA machine without internet.
#
#   bash scripts/fetch_gpu_wheels.sh           # once, on a machine with the package registries
#   bash scripts/gpu_check.sh --dry-run        # the plan, and whether the wheels are all there
#   bash scripts/gpu_check.sh OUT              # on the GPU machine: OUT/gpu_check.json + OUT/gpu_check.log
#
# The machine is expected to have Python 3.12 with a CUDA torch, numpy, numba, nvcc and ninja;
# everything else comes from the wheel folder (GPU_WHEELS, default .gpu_wheels/; the list is
# scripts/gpu_wheels.txt). Steps run in the order below, each under its own time limit and all
# under one deadline (GPU_CHECK_BUDGET_S, default 470 s, i.e. under 8 minutes); a step with too
# little time left is recorded as skipped. One step failing does not stop the others.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
PY="${PYTHON:-python3}"
WHEELS="${GPU_WHEELS:-.gpu_wheels}"
FETCH="bash scripts/fetch_gpu_wheels.sh"
BUDGET="${GPU_CHECK_BUDGET_S:-470}"
DRY=0
OUT=""
for a in "$@"; do
  case "$a" in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) echo "gpu_check.sh: unknown option $a; allowed: --dry-run, -h" >&2; exit 2 ;;
    *) OUT="$a" ;;
  esac
done

# -- the wheels -------------------------------------------------------------------------------
missing=()
while read -r req; do
  [[ -z "$req" || "$req" == \#* ]] && continue
  name="${req%%==*}"; ver="${req#*==}"
  norm="$(echo "$name" | tr 'A-Z' 'a-z' | tr -- '-.' '__')"
  compgen -G "$WHEELS/${norm}-${ver}-*.whl" > /dev/null || missing+=("$req")
done < scripts/gpu_wheels.txt
if (( ${#missing[@]} )); then
  echo "gpu_check.sh: ${#missing[@]} wheel(s) missing in $WHEELS: ${missing[*]}" >&2
  echo "fix: run \`$FETCH\` on a machine that reaches the package registries (writes $WHEELS), then carry $WHEELS along" >&2
  exit 3
fi

# -- the plan ---------------------------------------------------------------------------------
# name | time limit (s) | what
PLAN=(
  "install|90|pip install --no-index --no-deps $WHEELS/*.whl; pip install --no-deps -e . (else PYTHONPATH)"
  "environment|20|nvidia-smi, torch/CUDA versions, texbridge doctor"
  "sd_size_models|200|in the background: random SD-2.1-base-size model (fp16) + TAESD folders (benchmarks/sd_size_model.py)"
  "nvdiffrast_build|150|JIT-build nvdiffrast (TORCH_CUDA_ARCH_LIST=9.0) and rasterize the sample mesh once, timed"
  "raster_parity|60|benchmarks/raster_parity.py: nvdiffrast vs numba, sample mesh + 50k-triangle sphere, 512 px"
  "step_cost|120|benchmarks/step_cost.py --device cuda --only sd21 --memory full,low --encoder full,tiny --controlnet none (fp16, 512 px, 4 views)"
  "whole_job|130|texbridge texture sample mesh, SD-size random model, --memory full --encoder tiny, 1000 steps, 1024 px"
  "gpu_tests|120|pytest -m gpu tests/engine/test_raster_gpu.py tests/server/test_gpu.py"
  "server_job|90|benchmarks/server_gpu.py: texbridge serve on CUDA, tiny model, two jobs, VRAM before/after unload"
)
echo "gpu_check.sh plan (wheels: $WHEELS, all $(grep -cv '^\s*\(#\|$\)' scripts/gpu_wheels.txt) present; deadline ${BUDGET} s):"
for p in "${PLAN[@]}"; do IFS='|' read -r n t w <<< "$p"; printf '  %-17s <= %4s s  %s\n' "$n" "$t" "$w"; done
echo "writes: OUT/gpu_check.json (every number) and OUT/gpu_check.log (everything printed)"
if (( DRY )); then exit 0; fi
if [[ -z "$OUT" ]]; then echo "usage: bash scripts/gpu_check.sh [--dry-run] OUT" >&2; exit 2; fi

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
LOG="$OUT/gpu_check.log"
WORK="$(mktemp -d /tmp/gpu_check.XXXXXX)"
exec > >(tee -a "$LOG") 2>&1
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export TORCH_EXTENSIONS_DIR="$WORK/torch_extensions" MAX_JOBS="${MAX_JOBS:-16}"
T_START=$(date +%s)
: > "$WORK/steps.tsv"

secs_since() { local ms=$(( ($(date +%s%N) - $1) / 1000000 )); printf '%d.%03d' $((ms / 1000)) $((ms % 1000)); }
limit_for() {  # the step's own limit, cut to what is left of the deadline
  local left=$(( BUDGET - ($(date +%s) - T_START) ))
  (( left < $1 )) && echo "$left" || echo "$1"
}
step() {  # step NAME LIMIT CMD...: run under a time limit, record rc and seconds
  local name="$1" lim; lim="$(limit_for "$2")"; shift 2
  if (( lim < 10 )); then echo "== $name: skipped (deadline)"; printf '%s\tskipped\t0\n' "$name" >> "$WORK/steps.tsv"; return; fi
  echo "== $name (limit ${lim} s): $*"
  local t0; t0=$(date +%s%N)
  timeout --kill-after=10 "$lim" "$@"; local rc=$?
  local dt; dt=$(secs_since "$t0")
  echo "== $name: rc=$rc in ${dt} s"
  printf '%s\t%s\t%s\n' "$name" "$rc" "$dt" >> "$WORK/steps.tsv"
}

install() {
  "$PY" -m pip install -q --no-index --no-deps "$WHEELS"/*.whl || return 1
  "$PY" -c "import setuptools" 2>/dev/null && "$PY" -m pip install -q --no-deps --no-build-isolation -e . \
    || echo "editable install failed; running from the checkout via PYTHONPATH"
}
step install 90 install
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
TB=("$PY" -m server.cli)

step environment 20 bash -c "{ nvidia-smi; $PY -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.get_device_name(0))'; ${TB[*]} doctor; } 2>&1 | tee $WORK/environment.txt"

# CPU-only work, overlapped with the GPU steps below.
MODELS_PID=""
if (( $(limit_for 200) >= 10 )); then
( t0=$(date +%s%N); OMP_NUM_THREADS=8 timeout 200 "$PY" benchmarks/sd_size_model.py "$WORK/models" > "$WORK/models.log" 2>&1
  printf 'sd_size_models\t%s\t%s\n' "$?" "$(secs_since "$t0")" >> "$WORK/steps.tsv" ) &
MODELS_PID=$!
fi

step nvdiffrast_build 150 "$PY" -c "
import time, torch
t = time.perf_counter()
from engine.assets import SAMPLE_MESH
from engine.cameras import fixed_views
from engine.mesh import load_mesh
from engine.raster import RasterBackend, RasterContext, rasterize
g = rasterize(RasterContext(RasterBackend.NVDIFFRAST, device='cuda'), load_mesh(SAMPLE_MESH), fixed_views(1), 64)
torch.cuda.synchronize()
print(f'nvdiffrast built and ran in {time.perf_counter() - t:.1f} s; covered pixels {int(g.mask.sum())}')
"
step raster_parity 60 "$PY" benchmarks/raster_parity.py --res 512 --json "$WORK/parity.json"
step step_cost 120 "$PY" benchmarks/step_cost.py --device cuda --only sd21 --memory full,low --encoder full,tiny \
  --controlnet none --texture-size 1024 --views 4 --steps 5 --json "$WORK/step_cost.json"

if [[ -n "$MODELS_PID" ]]; then echo "== waiting for the SD-size model folders"; wait "$MODELS_PID"; cat "$WORK/models.log"; fi
whole_job() {
  [[ -f "$WORK/models/sd21_random/model_index.json" ]] || { echo "no SD-size model folder"; return 1; }
  "${TB[@]}" texture engine/assets/sample_mesh.obj --prompt "a weathered bronze statue" \
    --model "$WORK/models/sd21_random" --device cuda --backend auto --memory full --encoder tiny \
    --tiny-encoder "$WORK/models/taesd_random" --steps 1000 --texture-size 1024 --out "$WORK/job"
}
step whole_job 130 whole_job
step gpu_tests 120 "$PY" -m pytest -q -m gpu -p no:cacheprovider --junitxml="$WORK/junit.xml" \
  tests/engine/test_raster_gpu.py tests/server/test_gpu.py
step server_job 90 "$PY" benchmarks/server_gpu.py --json "$WORK/server_gpu.json"

# -- one JSON ---------------------------------------------------------------------------------
"$PY" - "$WORK" "$OUT/gpu_check.json" "$T_START" <<'PYEOF'
import json, sys, time, glob, os
from pathlib import Path
work, out, t_start = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
def load(name):
    p = work / name
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        return {"missing": f"{name}: {type(exc).__name__}"}
steps = {}
for line in (work / "steps.tsv").read_text().splitlines():
    n, rc, s = line.split("\t")
    steps[n] = {"rc": rc, "seconds": float(s or 0)}
res = {"wall_s": time.time() - t_start, "steps": steps,
       "environment": (work / "environment.txt").read_text()[-4000:] if (work / "environment.txt").exists() else None,
       "raster_parity": load("parity.json"), "step_cost": load("step_cost.json"),
       "server_job": load("server_gpu.json")}
job = load("job/job.json")
progress = sorted(glob.glob(str(work / "job/progress/step_*.png")))
res["whole_job"] = {"job_json": job, "steps_reached": int(Path(progress[-1]).stem[5:]) if progress else 0,
                    "wall_s": steps.get("whole_job", {}).get("seconds")}
try:
    import xml.etree.ElementTree as ET
    r = ET.parse(work / "junit.xml").getroot()
    suite = r if r.tag == "testsuite" else r[0]
    res["gpu_tests"] = {k: suite.get(k) for k in ("tests", "failures", "errors", "skipped", "time")}
    res["gpu_tests"]["failed"] = [c.get("classname") + "::" + c.get("name") for c in suite.iter("testcase")
                                  if c.find("failure") is not None or c.find("error") is not None]
except Exception as exc:
    res["gpu_tests"] = {"missing": f"junit.xml: {type(exc).__name__}"}
out.write_text(json.dumps(res, indent=2, default=str))
print(f"wrote {out} ({res['wall_s']:.0f} s in all)")
PYEOF
rm -rf "$WORK"
echo "gpu_check.sh done: $OUT/gpu_check.json, $LOG"
