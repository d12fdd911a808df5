#!/usr/bin/env bash
# One-command setup: creates .venv in the repo root and installs facegan with every
# dependency pinned by constraints.txt. Safe to rerun.
#   ./setup.sh            # everything needed to run facegan and its tests
#   ./setup.sh --browser  # also Debian's chromium (for the MLflow UI screenshot test)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), "facegan needs Python 3.11"' 

[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip wheel "setuptools<81"
# torch/torchvision come from the local wheel index; dlib from the dlib-bin wheel (never built).
"${PIP[@]}" install -q -c constraints.txt -e ".[test]"
# face_recognition declares `dlib`, which would be built from source: install it without deps.
"${PIP[@]}" install -q --no-deps -c constraints.txt face_recognition

if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi
fi

.venv/bin/python - <<'PY'
import importlib
mods = ["torch", "torchvision", "cv2", "dlib", "mlflow", "prefect", "pandas", "pyarrow"]
for m in mods:
    importlib.import_module(m)
import cv2
assert hasattr(cv2, "CascadeClassifier"), "opencv without Haar cascades (need opencv<5)"
print("facegan setup ok: .venv/bin/facegan is ready")
PY
