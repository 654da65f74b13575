#!/usr/bin/env bash
# Remakes crates/gpt/tests/fixtures/arch/: tiny random models of every architecture gpt-rs runs
# (llama, llama31 = llama with Llama 3.1 RoPE scaling, qwen2, qwen3, mistral, phi3, gemma3) as
# Hugging Face folders made with transformers, GGUF files made from them with llama.cpp's
# convert_hf_to_gguf.py and llama-quantize, and transformers' logits for a few token sequences.
# Never in CI: it downloads torch and builds llama.cpp.
#
# Usage: scripts/make_arch_fixtures.sh [ARCH...]   (default: all)
# llama.cpp comes from bench/llama_cpp_build.sh (llama-cpp-python's sdist, built under bench/.venv);
# the Python side runs in bench/.venv-fixtures (torch, transformers, sentencepiece, gguf-py from the
# same vendored llama.cpp). The llama-cpp-python binding from that sdist, on the library we build,
# cross-checks llama.cpp's logits of every GGUF against transformers' (written to each README).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
LLAMA_CPP_PYTHON_VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
export LLAMA_CPP_PYTHON_VERSION

JOBS="${JOBS:-2}" "$root/bench/llama_cpp_build.sh" llama-quantize
sdist="$root/bench/.venv/src/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION"
llama_cpp="$sdist/vendor/llama.cpp"
build="$root/bench/.venv/llama.cpp-build"

venv="$root/bench/.venv-fixtures"
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
if ! "$venv/bin/python" -c 'import torch, transformers, sentencepiece, tokenizers, safetensors, gguf, numpy' 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check torch transformers tokenizers sentencepiece \
    safetensors numpy protobuf
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$llama_cpp/gguf-py"
fi
# llama-cpp-python's ctypes binding needs these (its own package stays uninstalled: we point it at our build)
"$venv/bin/python" -c 'import diskcache, jinja2' 2>/dev/null ||
  "$venv/bin/pip" install --quiet --disable-pip-version-check diskcache jinja2 typing-extensions

export PYTHONHASHSEED=0 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
"$venv/bin/python" "$here/make_arch_fixtures.py" --llama-cpp "$llama_cpp" --quantize "$build/bin/llama-quantize" \
  --lib-dir "$build/bin" --py-binding "$sdist" "$@"
