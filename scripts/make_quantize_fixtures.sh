#!/usr/bin/env bash
# Remakes crates/gpt/tests/fixtures/quantize/cases.json: for float GGUF fixtures of the repo and
# each type `gpt quantize` writes, the sha256 of every tensor's bytes (and the file type) in the
# file that llama.cpp's `llama-quantize --pure` writes from it (no importance matrix), and the same
# for its mixes Q4_K_M and Q5_K_M (without --pure). tests/quantize.rs quantizes the
# same inputs and compares. Never in CI: it builds llama-quantize (bench/llama_cpp_build.sh) and
# reads the outputs with the `gguf` package vendored in the same llama.cpp, in bench/.venv.
#
# Usage: scripts/make_quantize_fixtures.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
"$root/bench/llama_cpp_build.sh" llama-quantize
venv="$root/bench/.venv"
src=$(ls -d "$venv"/src/llama_cpp_python-*/vendor/llama.cpp | head -1)
"$venv/bin/python" -c 'import numpy, yaml' 2>/dev/null || "$venv/bin/pip" install --quiet numpy pyyaml
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fixtures="$root/crates/gpt/tests/fixtures"
inputs=(arch/llama31/model-f32.gguf arch/llama/model-f16.gguf arch/qwen2/model-f16.gguf arch/qwen3/model-f16.gguf arch/gemma3/model-f16.gguf arch/phi3/model-f16.gguf)
types=(Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K)
mixes=(Q4_K_M Q5_K_M)
for input in "${inputs[@]}"; do
  for t in "${types[@]}"; do
    "$venv/llama.cpp-build/bin/llama-quantize" --pure "$fixtures/$input" "$tmp/$(echo "$input" | tr / _)-$t.gguf" "$t" >/dev/null
  done
  # The mixes as llama-quantize makes them (no --pure): its per-tensor choices are the reference.
  for t in "${mixes[@]}"; do
    "$venv/llama.cpp-build/bin/llama-quantize" "$fixtures/$input" "$tmp/$(echo "$input" | tr / _)-$t.gguf" "$t" >/dev/null
  done
done
types+=("${mixes[@]}")
PYTHONPATH="$src/gguf-py" "$venv/bin/python" - "$tmp" "$fixtures/quantize/cases.json" "${inputs[*]}" "${types[*]}" <<'PY'
import hashlib, json, sys
from gguf import GGUFReader
tmp, out, inputs, types = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
cases = []
for inp in inputs:
    for t in types:
        r = GGUFReader(f"{tmp}/{inp.replace('/', '_')}-{t}.gguf")
        tensors = {x.name: {"type": x.tensor_type.name, "sha256": hashlib.sha256(x.data.tobytes()).hexdigest()}
                   for x in r.tensors}
        file_type = int(r.fields["general.file_type"].parts[-1][0])
        cases.append({"input": inp, "type": t, "file_type": file_type, "tensors": tensors})
json.dump({"produced_by": "llama-quantize --pure (llama.cpp vendored by llama-cpp-python 0.3.36), sha256 of each tensor's bytes read with gguf-py",
           "cases": cases}, open(out, "w"), indent=1)
print(f"{len(cases)} cases -> {out}")
PY
