#!/usr/bin/env bash
# Checks that Hugging Face `tokenizers` reads a tokenizer trained by `gpt tokenizer train` to the
# same ids as gpt-rs. CI runs it after the release build.
#
# 1. Builds `gpt` (release) and a virtual environment with `tokenizers`, both in the build folder.
# 2. Trains 1000-token vocabularies on the first 90% of Tiny Shakespeare (the test fixture), with
#    each split pattern (gpt2, smollm, llama3).
# 3. hf_tokenizers_check.py encodes the held-out 10% (cut into paragraphs and lines) and hard
#    strings with Hugging Face (DIR/tokenizer.json, and DIR/encoder.json + vocab.bpe) and with
#    `gpt tokenize --tokenizer DIR --json`, and fails on any difference.
#
# Usage: scripts/hf_tokenizers_check.sh        (prints "N passed, 0 failed"; exit 1 on a mismatch)
# TOKENIZERS_VERSION pins the pip package (default: the newest); GPT_BIN=path/to/gpt uses that
# binary instead of building one.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$root"
venv="$target/venv-tokenizers"
work="$target/hf-tokenizers-check"
gpt_binary
python_venv "$venv" tokenizers "tokenizers${TOKENIZERS_VERSION:+==$TOKENIZERS_VERSION}"

rm -rf "$work"
mkdir -p "$work"
corpus="crates/gpt/tests/fixtures/tinyshakespeare/input.txt"
# nanoGPT's split: the first 90% (cut at a line) for training, the rest held out.
"$venv/bin/python" - "$corpus" "$work" <<'PY'
import sys
text = open(sys.argv[1], encoding="utf-8").read()
cut = text.rfind("\n", 0, len(text) * 9 // 10) + 1
open(f"{sys.argv[2]}/train.txt", "w", encoding="utf-8").write(text[:cut])
open(f"{sys.argv[2]}/heldout.txt", "w", encoding="utf-8").write(text[cut:])
PY
for pre in gpt2 smollm llama3; do
  "$gpt" tokenizer train --vocab-size 1000 --pre "$pre" --out "$work/tok-$pre" "$work/train.txt" >/dev/null
done
"$venv/bin/python" "$root/scripts/hf_tokenizers_check.py" --gpt "$gpt" \
  --heldout "$work/heldout.txt" --train "$work/train.txt" "$work/tok-gpt2" "$work/tok-smollm" "$work/tok-llama3"
