#!/usr/bin/env bash
# Trains a tiny model for a few steps, then checks that Hugging Face transformers loads the
# checkpoint and computes the same logits as gpt-rs. PyTorch + transformers are large downloads,
# so this runs by hand (not in CI): scripts/hf_checkpoint_check.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/bench/.venv-torch"
if ! "$venv/bin/python" -c 'import torch, transformers' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check torch transformers
fi
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p gpt-cli
gpt="$root/target/release/gpt"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sed -e "s#^files = .*#files = [\"$root/crates/gpt/tests/fixtures/tinyshakespeare/input.txt\"]#" \
    -e "s#^out_dir = .*#out_dir = \"$work/out\"#" -e 's#^max_steps = .*#max_steps = 20#' \
    -e 's#^checkpoint_every = .*#checkpoint_every = 20#' -e 's#^sample_every = .*#sample_every = 0#' \
    "$root/configs/shakespeare-char.toml" > "$work/c.toml"
"$gpt" train "$work/c.toml" > /dev/null 2>&1
"$venv/bin/python" "$root/scripts/hf_checkpoint_check.py" "$work/out/latest" "$gpt"
