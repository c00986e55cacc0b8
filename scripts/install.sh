#!/usr/bin/env bash
# Installs star-reid and its test tools into the active Python environment,
# compiling star_ext._C against the torch installed first.
#   STAR_TORCH=2.13.0 bash scripts/install.sh   # another torch (e.g. a CPU-only build)
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install "torch==${STAR_TORCH:-2.14.1}" torchvision
python -m pip install --no-build-isolation ".[test]"
# rtmlib is the pose tests' oracle only; its declared opencv-python / opencv-contrib-python would
# overwrite opencv-python-headless's cv2 (three distributions, one module): no dependencies.
python -m pip install --no-deps "rtmlib==0.0.16"
