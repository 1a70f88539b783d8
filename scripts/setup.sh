#!/usr/bin/env bash
# Install everything patchnb needs on a fresh Debian/Ubuntu machine with Python 3.11:
# the Fashion-MNIST data (apt when root, else torchvision's download), a venv in .venv with
# torch/torchvision by pip, patchnb itself (editable, with dev tools) and its Jupyter kernel.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${PATCHNB_DATA:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] apt-get install dataset-fashion-mnist"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "[setup] no root/apt: Fashion-MNIST will be downloaded by torchvision below"
    NEED_DOWNLOAD=1
  fi
fi

# `setup.sh --test` (make test): the system services the tests drive for real: Debian's Chromium (browser
# tests, through Playwright; no browser download) and a single-node Slurm (slurm-wlm + munge)
if [ "${1:-}" = "--test" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=""
  command -v chromium >/dev/null || missing="$missing chromium"
  command -v slurmctld >/dev/null || missing="$missing slurm-wlm"
  command -v munged >/dev/null || missing="$missing munge"
  if [ -n "$missing" ]; then
    echo "[setup] apt-get install$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
# (re)install when anything is missing or pyproject.toml changed since the last install
STAMP=.venv/.patchnb-installed
if ! .venv/bin/python -c "import torch, torchvision, faiss, jupyter_book, papermill, patchnb" 2>/dev/null \
   || [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  echo "[setup] pip install (torch 2.14.1 / torchvision 0.29.1, then patchnb[dev])"
  .venv/bin/pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/pip install -q -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
  touch "$STAMP"
fi
.venv/bin/python -c "import torch, torchvision, faiss, jupyter_book, papermill, patchnb" \
  || { echo "[setup] the install failed: see pip's messages above"; exit 1; }
# papermill must run this venv's python, not the system's
.venv/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (patchnb)" >/dev/null
if [ "${NEED_DOWNLOAD:-0}" = 1 ]; then .venv/bin/patchnb data fashion_mnist; fi
echo "[setup] ready: $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')"
