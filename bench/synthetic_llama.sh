#!/usr/bin/env bash
# Writes a random-weight 1024-wide Llama (bench/synthetic_llama.py) and quantizes it with
# llama-quantize into the K-quant types, whose matrices keep their own type at this width (SmolLM2's
# 576 columns turn them into Q4_0/Q5_0 fallbacks). Files go to OUT (default /tmp/synthetic-llama),
# never into the repo. Then: bench/llama_cpp.sh OUT/synthetic-Q2_K.gguf 1 2.
#
# Usage: bench/synthetic_llama.sh [OUT] [TYPE...]   (default types: Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K)
# A type ending in -pure (Q2_K-pure) is quantized with --pure: every matrix in that type, the
# embedding and output too.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
out="${1:-/tmp/synthetic-llama}"
shift || true
types="${*:-Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K}"

"$here/llama_cpp_build.sh" llama-quantize
venv="$here/.venv"
gguf_py="$(ls -d "$venv"/src/llama_cpp_python-*/vendor/llama.cpp/gguf-py | tail -1)"
"$venv/bin/pip" install --quiet --disable-pip-version-check numpy pyyaml

cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p gpt-cli
tokenizer="$("$root/target/release/gpt" pull smollm2-135m-instruct)"

mkdir -p "$out"
f16="$out/synthetic-F16.gguf"
if [ ! -f "$f16" ]; then
  PYTHONPATH="$gguf_py" "$venv/bin/python" "$here/synthetic_llama.py" "$tokenizer" "$f16.part"
  mv "$f16.part" "$f16"
fi
for t in $types; do
  case "$t" in
    *-pure) flags=(--pure); ty="${t%-pure}" ;;
    *) flags=(); ty="$t" ;;
  esac
  [ -f "$out/synthetic-$t.gguf" ] ||
    "$venv/llama.cpp-build/bin/llama-quantize" "${flags[@]}" "$f16" "$out/synthetic-$t.gguf" "$ty" > /dev/null 2>&1
  echo "$out/synthetic-$t.gguf"
done
