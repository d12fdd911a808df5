#!/usr/bin/env bash
# The GPU check: on a CUDA machine, in at most ~8 minutes, set up, crop LFW at 64 px, train the
# default recipe with --device cuda for ~4 minutes of training steps, evaluate N = 1000 and
# print images/s, kimg and the Table 1 row.
#
#   bench/gpu_check.sh                      # MODEL=dcgan (the default recipe) TRAIN_MINUTES=4 N=1000
#   MODEL=projected bench/gpu_check.sh      # the projected GAN instead
#
# Setup: ./setup.sh (needs the package index), unless FACEGAN_PY names a Python that already has
# facegan's dependencies (e.g. a machine without internet, with wheels installed beforehand).
# Data: the LFW archive from FACEGAN_SHARED_DATA (default ../shared/data), cropped once into
# FACEGAN_HOME (default a fresh temp folder) with one crop worker per core.
# A GPU box with no package index (the lent H200, docs/results/gpu.md) cannot run this: use
# bench/gpu_session.sh there (train only; the grids and generators are scored back home).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-dcgan}
DEVICE=${DEVICE:-cuda}   # DEVICE=cpu rehearses the script on a machine without a GPU
TRAIN_MINUTES=${TRAIN_MINUTES:-4}
N=${N:-1000}
SHARED=${FACEGAN_SHARED_DATA:-../shared/data}
export FACEGAN_HOME=${FACEGAN_HOME:-$(mktemp -d /tmp/facegan-gpu-check.XXXXXX)}
export PYTHONUNBUFFERED=1
start=$(date +%s)
stamp() { echo "[gpu_check +$(( $(date +%s) - start ))s] $*"; }

if [ -z "${FACEGAN_PY:-}" ]; then
  stamp "setup: ./setup.sh"
  ./setup.sh >/dev/null
  FACEGAN_PY=.venv/bin/python
fi
FACEGAN=("$FACEGAN_PY" -m facegan.flows.cli)
"$FACEGAN_PY" - "$DEVICE" <<'PY'
import sys, torch
if sys.argv[1] == "cuda":
    assert torch.cuda.is_available(), "gpu_check: no CUDA device visible to torch"
    print(f"[gpu_check] torch {torch.__version__}, {torch.cuda.get_device_name(0)}, "
          f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
else:
    print(f"[gpu_check] rehearsal on {sys.argv[1]} (torch {torch.__version__})")
PY

if [ ! -d "$FACEGAN_HOME/datasets/lfw-deepfunneled/64" ]; then
  stamp "acquire + crop LFW at 64 px ($(nproc) workers)"
  "${FACEGAN[@]}" acquire --path "$SHARED/archives/lfw-deepfunneled.tgz" >/dev/null
  "${FACEGAN[@]}" crop --sizes 64 --largest-only --workers "$(nproc)" >/dev/null
fi

stamp "train $MODEL at 64 px on $DEVICE for $TRAIN_MINUTES minutes of training steps"
t0=$(date +%s)
run_id=$("${FACEGAN[@]}" train --model "$MODEL" --size 64 --device "$DEVICE" --cpu-minutes "$TRAIN_MINUTES" \
         --name "gpu-check-$MODEL" --sample-every 1000 --checkpoint-every 2000 --log-every 100 | tail -n 1)
train_s=$(( $(date +%s) - t0 ))
stamp "train run $run_id (${train_s}s wall, start-up included)"
"$FACEGAN_PY" - "$run_id" <<'PY'
import sys
from facegan.tasks.common import tracking
run = tracking.get_run(sys.argv[1])
m = run.data.metrics
print(f"[gpu_check] kimg {m.get('kimg', float('nan')):.1f}, "
      f"images/s {m.get('images_per_sec', float('nan')):.0f} (last logging window), "
      f"training CPU-minutes {m.get('cpu_minutes', float('nan')):.1f}")
PY

stamp "evaluate N = $N"
"${FACEGAN[@]}" evaluate --run "$run_id" -n "$N" --workers "$(nproc)" --device "$DEVICE"
stamp "done"
