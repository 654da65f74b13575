#!/usr/bin/env bash
# Measures gpt-rs's BPE encoder beside tiktoken and Hugging Face `tokenizers` on GPT-2's
# vocabulary, in the same run, single-threaded, on the same texts. Never in CI.
#
# tiktoken normally downloads its `gpt2` encoding; here it is built offline from GPT-2's
# encoder.json (same ids, same split pattern). Hugging Face's BPE is built from encoder.json +
# vocab.bpe. Both come from pip into a virtual environment under bench/.venv-tok.
#
# Usage: bench/tokenizer.sh [DATA_DIR]   (default: ../shared/data relative to the repo root)
# DATA_DIR holds gpt2-tokenizer/{encoder.json,vocab.bpe} and gutenberg-stories/train-*.txt;
# Tiny Shakespeare is the test fixture. Prints MB/s (median of 3 encodes of the whole file, load
# time excluded) and the ratio gpt-rs / tiktoken, after checking all three agree on the count.
# GPT_BIN=path/to/gpt uses that binary instead of building one.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
data="$(cd "${1:-$root/../shared/data}" && pwd)"
venv="$here/.venv-tok"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import tiktoken, tokenizers' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check tiktoken tokenizers
fi

if [ -n "${GPT_BIN:-}" ]; then gpt="$GPT_BIN"; else
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p gpt-cli
  gpt="${CARGO_TARGET_DIR:-$root/target}/release/gpt"
fi

gutenberg="$venv/gutenberg-stories.txt"
cat "$data"/gutenberg-stories/train-*.txt >"$gutenberg"

export RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
"$venv/bin/python" "$here/tokenizer_bench.py" --gpt "$gpt" --vocab "$data/gpt2-tokenizer" \
  "$root/crates/gpt/tests/fixtures/tinyshakespeare/input.txt" "$gutenberg"
