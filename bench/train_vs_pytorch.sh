#!/usr/bin/env bash
# Training speed of gpt-rs against PyTorch on CPU, same model shape, batch and thread count, in
# the same run: nanoGPT's CPU configuration (character-level Tiny Shakespeare, 4 layers, 4 heads,
# C = 128, T = 64, B = 12, AdamW). PyTorch is installed with pip in bench/.venv-torch. Never in CI.
#
# Usage: bench/train_vs_pytorch.sh [THREADS] [STEPS]     (default 2 threads, 200 steps)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
threads="${1:-2}"
steps="${2:-200}"
venv="$here/.venv-torch"
corpus="$root/crates/gpt/tests/fixtures/tinyshakespeare/input.txt"
if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check torch numpy
fi
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p gpt-cli
gpt="$root/target/release/gpt"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sed -e "s#^files = .*#files = [\"$corpus\"]#" -e "s#^out_dir = .*#out_dir = \"$work/out\"#" \
    -e "s#^max_steps = .*#max_steps = $steps#" -e 's#^eval_every = .*#eval_every = 0#' \
    -e 's#^sample_every = .*#sample_every = 0#' -e 's#^checkpoint_every = .*#checkpoint_every = 0#' \
    "$root/configs/shakespeare-char.toml" > "$work/bench.toml"
# Tokenize first (not timed), then time the training steps.
sed -e "s#^max_steps = .*#max_steps = 1#" "$work/bench.toml" > "$work/prep.toml"
"$gpt" train "$work/prep.toml" --threads "$threads" > /dev/null 2>&1
rm -rf "$work/out/checkpoints" "$work/out/latest"
t0=$(date +%s.%N)
"$gpt" train "$work/bench.toml" --threads "$threads" > /dev/null 2>&1
t1=$(date +%s.%N)
ours=$(python3 -c "print($steps * 12 * 64 / ($t1 - $t0))")
theirs=$(OMP_NUM_THREADS="$threads" "$venv/bin/python" "$here/nanogpt_cpu.py" "$corpus" --steps "$steps" --threads "$threads")
python3 - "$ours" "$theirs" "$threads" <<'PY'
import json, sys
ours, theirs, t = float(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
print(f"threads={t}: gpt-rs {ours:,.0f} tok/s | PyTorch {theirs['torch']} {theirs['tokens_per_s']:,.0f} tok/s | ratio {ours / theirs['tokens_per_s']:.2f}x")
PY
