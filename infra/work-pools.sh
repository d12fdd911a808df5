#!/usr/bin/env bash
# Work pools and workers for facegan's deployments (infra/prefect.yaml).
#
#   infra/work-pools.sh create          # pools `cpu` and `gpu` (process type) + GPU concurrency limit
#   infra/work-pools.sh cpu-worker      # a worker on pool `cpu` (foreground)
#   infra/work-pools.sh gpu-worker      # one worker per GPU on pool `gpu`, each pinned with CUDA_VISIBLE_DEVICES
#   infra/work-pools.sh deploy          # prefect deploy --all --prefect-file infra/prefect.yaml
#
# Environment: PREFECT_API_URL (the server), FACEGAN_HOME / MLFLOW_TRACKING_URI (passed on to the
# flow runs), GPUS (GPU ids for gpu-worker; default: all from nvidia-smi, else "0"),
# TRAININGS_PER_GPU (default 1), CPU_RUNS (concurrent runs of the cpu worker, default 2),
# PREFECT (the prefect executable; default .venv/bin/prefect of this checkout).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export FACEGAN_REPO="${FACEGAN_REPO:-$REPO}"   # the deployments' pull step: run flows from this checkout
PREFECT="${PREFECT:-$REPO/.venv/bin/prefect}"
[ -x "$PREFECT" ] || PREFECT=prefect
TRAININGS_PER_GPU="${TRAININGS_PER_GPU:-1}"
CPU_RUNS="${CPU_RUNS:-2}"

gpu_ids() {
  if [ -n "${GPUS:-}" ]; then echo "$GPUS" | tr ',' ' '; return; fi
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=index --format=csv,noheader | tr '\n' ' '
  else
    echo 0  # no NVIDIA GPU here: one "gpu" worker that trains on what torch finds (MPS or CPU)
  fi
}

create_pool() {  # create, or keep an existing pool as it is
  if "$PREFECT" work-pool inspect "$1" >/dev/null 2>&1; then
    echo "work pool $1 exists"
  else
    "$PREFECT" work-pool create "$1" --type process
  fi
}

cmd="${1:-}"
case "$cmd" in
  create)
    create_pool cpu
    create_pool gpu
    n=$(gpu_ids | wc -w)
    # at most TRAININGS_PER_GPU concurrent flow runs per GPU on the whole pool (each worker also caps itself)
    "$PREFECT" work-pool set-concurrency-limit gpu $((n * TRAININGS_PER_GPU))
    ;;
  cpu-worker)
    exec "$PREFECT" worker start --pool cpu --type process --limit "$CPU_RUNS" --name "cpu-$(hostname)"
    ;;
  gpu-worker)
    pids=()
    trap 'kill "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
    for id in $(gpu_ids); do
      CUDA_VISIBLE_DEVICES="$id" "$PREFECT" worker start --pool gpu --type process \
        --limit "$TRAININGS_PER_GPU" --name "gpu-$id-$(hostname)" &
      pids+=($!)
    done
    wait
    ;;
  deploy)
    cd "$REPO"
    "$PREFECT" --no-prompt deploy --all --prefect-file infra/prefect.yaml
    ;;
  *)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    [ -z "$cmd" ] || { echo "unknown command: $cmd" >&2; exit 2; }
    ;;
esac
