#!/usr/bin/env bash
# Redraws the pictures of docs/gallery.md: runs every `gpt inspect ... --out docs/gallery/...`
# command written in it, from the repository root (the default model and gemma3-270m are fetched
# on first use). PNG text is drawn with the machine's fonts: install a Hangul font first (Debian:
# fonts-nanum) or the Korean example's labels stay blank (gpt says which characters).
set -euo pipefail
cd "$(dirname "$0")/.."
GPT="${GPT_BIN:-target/release/gpt}"
[ -x "$GPT" ] || cargo build --release -p gpt-cli
grep -E '^gpt inspect .*--out docs/gallery/' docs/gallery.md | while IFS= read -r line; do
  echo "+ $line"
  eval "\"$GPT\" ${line#gpt }"
done
