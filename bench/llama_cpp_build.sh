#!/usr/bin/env bash
# Fetches llama.cpp and builds the named targets of it; prints nothing but the build's own output.
#
# llama.cpp comes from the Python package llama-cpp-python (its source distribution vendors
# llama.cpp): we fetch the sdist with pip and build with cmake and ninja (from pip, in a virtual
# environment under bench/.venv) for this CPU's AVX2/AVX-512/VNNI. Never in CI.
#
# Usage: bench/llama_cpp_build.sh TARGET...   (e.g. llama-bench, llama-quantize)
# Afterwards: binaries in bench/.venv/llama.cpp-build/bin, the source tree (with
# convert_hf_to_gguf.py and gguf-py) at bench/.venv/src/llama_cpp_python-*/vendor/llama.cpp.
# A target whose binary already exists is not rebuilt unless REBUILD=1.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
LLAMA_CPP_PYTHON_VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
work="$here/.venv"
build="$work/llama.cpp-build"

missing=()
for t in "$@"; do
  if [ ! -x "$build/bin/$t" ] || [ "${REBUILD:-0}" = 1 ]; then missing+=("$t"); fi
done
if [ ! -d "$work/src/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp" ] || [ ${#missing[@]} -gt 0 ]; then
  python3 -m venv "$work"
  "$work/bin/pip" install --quiet --disable-pip-version-check cmake ninja
  mkdir -p "$work/src"
  if [ ! -f "$work/src/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz" ]; then
    "$work/bin/pip" download --quiet --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
      "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$work/src"
  fi
  if [ ! -d "$work/src/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp" ]; then
    tar -xzf "$work/src/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz" -C "$work/src"
  fi
fi
src="$work/src/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp"

# Every SIMD extension this CPU reports, but AMX: llama.cpp's AMX kernels stop with SIGILL here (a
# tilezero in tinygemm_kernel_amx, seen in gdb; the tile state itself is granted, BENCHMARKS.md
# "AMX tiles"), and GGML_NATIVE=ON would compile them in. Asked one by one:
# a flag the CPU lacks (AVX-VNNI, the VEX form, on CPUs with only AVX512-VNNI) is SIGILL in the
# kernels that use it.
cpu_flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
simd=""
for pair in AVX:avx AVX2:avx2 FMA:fma F16C:f16c AVX_VNNI:avx_vnni AVX512:avx512f AVX512_VBMI:avx512vbmi \
  AVX512_VNNI:avx512_vnni AVX512_BF16:avx512_bf16; do
  case "$cpu_flags" in *" ${pair#*:} "*) on=ON ;; *) on=OFF ;; esac
  simd="$simd -DGGML_${pair%%:*}=$on"
done
# A build made for other flags (another CPU) is rebuilt.
if [ "$(cat "$build/simd-flags" 2>/dev/null)" != "$simd" ]; then missing=("$@"); fi
if [ ${#missing[@]} -gt 0 ]; then
  # shellcheck disable=SC2086
  "$work/bin/cmake" -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF $simd \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF -DCMAKE_MAKE_PROGRAM="$work/bin/ninja"
  "$work/bin/cmake" --build "$build" --target "${missing[@]}" -j "${JOBS:-2}"
  echo "$simd" > "$build/simd-flags"
fi
