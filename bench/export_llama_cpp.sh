#!/usr/bin/env bash
# What `gpt export` writes, run by llama.cpp itself: `llama-simple` (greedy) on the exported file
# against `gpt generate --temperature 0` on the same file and on the folder it came from.
#
# Models: a character-level GPT-2, a byte-level BPE GPT-2 and a character-level Llama (grouped-query
# attention, untied unembedding), each trained here for STEPS steps with `gpt train`
# (configs/shakespeare-char.toml; a small copy of configs/gutenberg-bpe.toml on Tiny Shakespeare
# with a 512-token BPE; configs/shakespeare-char-llama.toml's block), and the Hugging Face folders of the tiny Llama-family
# fixtures (crates/gpt/tests/fixtures/arch/{llama,llama31,qwen2,qwen3}/hf, made by transformers).
# llama-simple comes from bench/llama_cpp_build.sh. Never in CI.
#
# Usage: bench/export_llama_cpp.sh   (STEPS=200 TOKENS=32 by default)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
STEPS="${STEPS:-200}"; TOKENS="${TOKENS:-32}"
"$here/llama_cpp_build.sh" llama-simple >/dev/null
simple="$here/.venv/llama.cpp-build/bin/llama-simple"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p gpt-cli
gpt="$root/target/release/gpt"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
shakespeare="$root/crates/gpt/tests/fixtures/tinyshakespeare/input.txt"

train() { # name tokenizer [extra model keys]
  cat > "$work/$1.toml" <<TOML
[model]
${3:-}
n_layer = 4
n_head = 4
n_embd = 128
block_size = 64
[data]
files = ["$shakespeare"]
tokenizer = "$2"
val_fraction = 0.1
[train]
out_dir = "$work/$1"
batch_size = 12
max_steps = $STEPS
learning_rate = 1e-3
warmup_steps = 20
eval_every = $STEPS
eval_batches = 5
sample_every = 100000
checkpoint_every = $STEPS
seed = 1337
TOML
  "$gpt" train "$work/$1.toml" >/dev/null 2>&1
  echo "$work/$1/latest"
}

llama_keys='arch = "llama"
n_kv_head = 2
d_ff = 352
tie_embeddings = false'
folders=("char:$(train char char):ROMEO:" "bpe:$(train bpe bpe:512):ROMEO:"
  "llama-char:$(train llama-char char "$llama_keys"):ROMEO:")
for a in llama llama31 qwen2 qwen3; do
  folders+=("$a:$root/crates/gpt/tests/fixtures/arch/$a/hf:The")
done

echo "| model | llama.cpp on the export = gpt-rs on the export | = gpt-rs on the folder | llama.cpp's text |"
echo "|---|---|---|---|"
for entry in "${folders[@]}"; do
  IFS=: read -r name dir prompt <<<"$entry"
  "$gpt" export "$dir" "$work/$name.gguf" >/dev/null
  "$simple" -m "$work/$name.gguf" -n "$TOKENS" "$prompt" >"$work/theirs" 2>/dev/null
  "$gpt" generate "$prompt" --model "$work/$name.gguf" --temperature 0 -n "$TOKENS" >"$work/ours" 2>/dev/null
  "$gpt" generate "$prompt" --model "$dir" --temperature 0 -n "$TOKENS" >"$work/folder" 2>/dev/null
  # Random weights make bytes that are not UTF-8: llama.cpp prints them raw, gpt-rs as U+FFFD.
  python3 - "$name" "$work/theirs" "$work/ours" "$work/folder" <<'PY'
import sys
name, *files = sys.argv[1:]
theirs, ours, folder = (open(f, "rb").read().decode("utf-8", "replace").rstrip() for f in files)
same = lambda a, b: "yes" if a == b else "NO"
print(f"| {name} | {same(theirs, ours)} | {same(theirs, folder)} | {theirs.replace(chr(10), ' ')[:60]} |")
PY
done
