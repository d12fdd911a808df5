#!/usr/bin/env bash
# The steps of a session on a lent GPU box (no package index; see bench/gpu_runs.py), one per call:
#   bench/gpu_session.sh setup                      # wheels from .gpu/wheels, facegan import root
#   bench/gpu_session.sh start NAME FACES SIZE KIMG [--set FIELD=VALUE ...]   # a background training
#   bench/gpu_session.sh exporter SPEC...           # background: export new checkpoints every 15 s
#   bench/gpu_session.sh status                     # steps, kimg and images/s of every run
#   bench/gpu_session.sh bundle                     # the next <= 60 MiB of exports into $OUT
# Trainings and the exporter start in their own sessions (setsid), so they outlive the call; the
# machine stays lent only while calls follow each other within its idle window (30 s on an H200).
# Name the data file a training reads in the `carry` of the call that starts it: on 2026-12-04 a
# file carried by an earlier call was gone by the next one. Trainings started together share one
# decoded copy of a dataset (GPU_RUNS/datasets). What ran, 2026-12-04 (docs/results/gpu.md):
#   call 1, carry .gpu/wheels .gpu/lfw-64.npz:  setup; start g-pgf .gpu/lfw-64.npz 64 2000
#       --set model=projected-fastgan (and seed=1, features=32 ...); exporter g-pgf=100,200,400 ...
#   call 2, carry .gpu/lfw-128.npz:  start g-pgf-128 .gpu/lfw-128.npz 128 1000 ...; sleep; bundle
#   calls 3-6: bundle (the next 60 MiB each)
set -euo pipefail
cd "$(dirname "$0")/.."
G=${GPU_RUNS:-/tmp/g}
export PYTHONPATH=/tmp/site:/tmp/pkg PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
case "$1" in
setup)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/wheels/*.whl
  mkdir -p /tmp/pkg/facegan "$G/logs"
  cp facegan/*.py /tmp/pkg/facegan/
  for d in config models evaluation tasks flows; do ln -sfn "$PWD/$d" "/tmp/pkg/facegan/$d"; done
  $PY -P -c "import torch, facegan.tasks.training.loop as l; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
  nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader || true ;;
start)
  name=$2 faces=$3 size=$4 kimg=$5; shift 5
  setsid nohup $PY bench/gpu_runs.py train --faces "$faces" --out "$G" --name "$name" --size "$size" \
    --kimg "$kimg" --set threads=2 "$@" > "$G/logs/$name.log" 2>&1 < /dev/null &
  echo "started $name" ;;
exporter)
  shift
  setsid nohup bash -c "while true; do $PY bench/gpu_runs.py export --out $G --weights-at $* || true; sleep 15; done" \
    > "$G/logs/exporter.log" 2>&1 < /dev/null &
  echo "exporter started" ;;
status)
  for m in "$G"/runs/*/metrics.jsonl; do
    $PY - "$m" <<'PY'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1]) if '"kimg"' in l]
name = sys.argv[1].split("/")[-2]
if rs:
    a, b = rs[0], rs[-1]
    rate = (b["kimg"] - a["kimg"]) * 1000 / max(b["wall"] - a["wall"], 1e-9)
    print(f"{name}: step {b['step']}, {b['kimg']:.1f} kimg, {rate:.0f} images/s since step {a['step']}, "
          f"loss_d {b.get('loss_d', float('nan')):.3f} loss_g {b.get('loss_g', float('nan')):.3f}")
else:
    print(f"{name}: no step logged yet")
PY
  done
  tail -n 2 "$G"/logs/*.log | cut -c1-300
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader || true
  df -h /tmp | tail -1 ;;
bundle)
  $PY bench/gpu_runs.py bundle --out "$G" --to "$OUT" --limit-mb "${LIMIT_MB:-60}" ;;
esac
