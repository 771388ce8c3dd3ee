#!/usr/bin/env bash
# The main demo: set up, train a small character-level GPT on the bundled King James Bible
# (about 5 minutes on a 2-core CPU, with a progress bar), then sample from it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
RUN=${RUN:-runs/kjv-char}
if [ -f "$RUN/train_state.pt" ]; then
  lmforge train configs/kjv-char.yaml --out "$RUN" --resume   # finishes an interrupted run; no-op if done
else
  lmforge train configs/kjv-char.yaml --out "$RUN"
fi
lmforge info "$RUN"
lmforge sample "$RUN" --prompt "In the beginning" --max-new-tokens 100 --temperature 0.8 --seed 0
