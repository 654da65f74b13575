#!/usr/bin/env bash
# Measures llama.cpp beside gpt-rs on the same model file, in the same run.
#
# llama.cpp comes from the Python package llama-cpp-python (its source distribution vendors
# llama.cpp): we fetch the sdist with pip and build llama.cpp's `llama-bench` with cmake (from pip, in
# a virtual environment under bench/.venv) for this CPU's AVX2/AVX-512/VNNI. Never in CI.
#
# Usage: bench/llama_cpp.sh [MODEL.gguf] [THREADS...]   (default: the default model; 1 and 2 threads)
# Prints both engines' pp128 and tg128 tokens/s and the ratio gpt-rs / llama.cpp.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
LLAMA_CPP_PYTHON_VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
work="$here/.venv"
build="$work/llama.cpp-build"

if [ ! -x "$build/bin/llama-bench" ] || [ "${REBUILD:-0}" = 1 ]; then
  python3 -m venv "$work"
  "$work/bin/pip" install --quiet --disable-pip-version-check cmake ninja
  mkdir -p "$work/src"
  "$work/bin/pip" download --quiet --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$work/src"
  tar -xzf "$work"/src/llama_cpp_python-*.tar.gz -C "$work/src"
  src="$(ls -d "$work"/src/llama_cpp_python-*/vendor/llama.cpp)"
  # Every SIMD extension of this CPU but AMX: its tile instructions fault here (the kernel does not
  # grant AMX state to processes), and GGML_NATIVE=ON would compile them in.
  "$work/bin/cmake" -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
    -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX_VNNI=ON -DGGML_AVX512=ON \
    -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF -DCMAKE_MAKE_PROGRAM="$work/bin/ninja"
  "$work/bin/cmake" --build "$build" --target llama-bench -j 2
fi

cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p gpt-cli
gpt="$root/target/release/gpt"
if [ $# -gt 0 ]; then model="$1"; shift; else model="$("$gpt" pull smollm2-135m-instruct)"; fi
threads="${*:-1 2}"

for t in $threads; do
  ll=$("$build/bin/llama-bench" -m "$model" -t "$t" -p 128 -n 128 -r 3 -o json 2>/dev/null)
  ll_pp=$(python3 -c 'import json,sys; d=json.load(sys.stdin); print([r["avg_ts"] for r in d if r["n_prompt"]>0][0])' <<<"$ll")
  ll_tg=$(python3 -c 'import json,sys; d=json.load(sys.stdin); print([r["avg_ts"] for r in d if r["n_gen"]>0][0])' <<<"$ll")
  ours=$("$gpt" bench --model "$model" --threads "$t" -p 128 -g 128 -r 3 --json)
  our_pp=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["pp_tokens_per_s"])' <<<"$ours")
  our_tg=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["tg_tokens_per_s"])' <<<"$ours")
  python3 - "$t" "$ll_pp" "$ll_tg" "$our_pp" "$our_tg" <<'PY'
import sys
t, lp, lt, op, ot = sys.argv[1], *map(float, sys.argv[2:])
print(f"threads={t}: llama.cpp pp128 {lp:8.1f} tg128 {lt:7.1f} | gpt-rs pp128 {op:8.1f} tg128 {ot:7.1f} | ratio pp {op/lp:5.2f}x tg {ot/lt:5.2f}x")
PY
done
