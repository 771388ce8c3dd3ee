#!/usr/bin/env bash
# Set up lmforge in ./.venv: PyTorch first (a CPU build where one is provided; an existing torch is kept),
# then the package with its extras, then the browser the web-page test drives (Debian's chromium).
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -d .venv ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch before anything else: a bare `torch` requirement with no torch installed can pull a multi-GB CUDA build.
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev]"
# The browser test needs a real Chromium; use the system package, never a downloaded browser build.
# Plots of Chinese tokens need a CJK font (fonts-wqy-microhei, 5 MB); without one they show empty boxes.
if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk"; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-wqy-microhei) \
      >/dev/null || echo "warning: could not install chromium / fonts-wqy-microhei; the browser test will be skipped" >&2
  else
    echo "note: install Debian's chromium and fonts-wqy-microhei (apt-get install chromium fonts-wqy-microhei)" \
         "to run the browser test and draw Chinese token labels" >&2
  fi
fi
python -c "import torch, lmforge; print(f'lmforge {lmforge.__version__} ready: torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}')"
