#!/usr/bin/env bash
# Remakes the training fixtures of architectures beyond GPT-2 (crates/gpt/tests/fixtures/llama-*)
# with PyTorch and transformers in bench/.venv-training. Never in CI: it downloads torch.
#
# Usage: scripts/make_training_fixtures.sh [NAME...]   (default: every case of the .py file)
set -euo pipefail
source "$(dirname "$0")/common.sh"
venv="$root/bench/.venv-training"
python_venv "$venv" "torch, transformers, safetensors" torch transformers safetensors
export PYTHONHASHSEED=0 OMP_NUM_THREADS=1
"$venv/bin/python" "$root/scripts/make_training_fixtures.py" "$@"
