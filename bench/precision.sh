#!/usr/bin/env bash
# How far each precision's logits are from the f32 path's, per weight type: for every prompt of
# the default model's reference file (crates/gpt/tests/fixtures/smollm2/reference.json), the
# worst |logit difference| over the f32 path's top 20 next tokens, and whether the argmax agrees.
#
# Usage: bench/precision.sh MODEL.gguf...   (PRECISIONS="fast q8" by default)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p gpt-cli
python3 - "$root/target/release/gpt" "$root/crates/gpt/tests/fixtures/smollm2/reference.json" \
  "${PRECISIONS:-fast q8}" "$@" <<'PY'
import json, os, subprocess, sys
gpt, ref, precisions, models = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4:]
prompts = [p["text"] for p in json.load(open(ref))["prompts"]]

def top(model, prompt, precision, k):
    out = subprocess.run([gpt, "inspect", "logits", prompt, "--model", model, "--precision",
                          precision, "--top", str(k), "--json"], check=True, capture_output=True, text=True)
    return {c["id"]: c["logit"] for c in json.loads(out.stdout)["top"]}

print("| file | precision | worst top-20 logit difference from f32 | argmax agrees |")
print("|---|---|---|---|")
for model in models:
    exact = [top(model, p, "f32", 20) for p in prompts]
    for precision in precisions:
        worst, agree = 0.0, 0
        for p, ref20 in zip(prompts, exact):
            got = top(model, p, precision, 500)
            worst = max(worst, max(abs(got.get(i, float("-inf")) - l) for i, l in ref20.items()))
            agree += max(got, key=got.get) == max(ref20, key=ref20.get)
        print(f"| {os.path.basename(model)} | {precision} | {worst:.4f} | {agree}/{len(prompts)} |", flush=True)
PY
