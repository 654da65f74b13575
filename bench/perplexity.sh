#!/usr/bin/env bash
# Perplexity of one model on one text by llama.cpp's `llama-perplexity` and by `gpt perplexity`,
# in the same run, same file, same context: both use llama-perplexity's method (windows of CTX
# tokens, BOS first in each, second half scored).
#
# llama.cpp is built by bench/llama_cpp_build.sh (from the llama-cpp-python source package, in a
# virtual environment under bench/.venv). Never in CI.
#
# Usage: bench/perplexity.sh [MODEL.gguf] [TEXT] [CTX]
#   (defaults: the default model, ../shared/data/gutenberg-stories/valid.txt, 512)
# Prints llama-perplexity's result and ours at each precision (PRECISIONS, default "q8 fast f32")
# with standard errors and the relative difference.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
"$here/llama_cpp_build.sh" llama-perplexity
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p gpt-cli
gpt="$root/target/release/gpt"
model="${1:-$("$gpt" pull smollm2-135m-instruct)}"
text="${2:-$root/../shared/data/gutenberg-stories/valid.txt}"
ctx="${3:-512}"
threads="${THREADS:-2}"

ll_log=$(mktemp)
"$here/.venv/llama.cpp-build/bin/llama-perplexity" -m "$model" -f "$text" -c "$ctx" -t "$threads" >"$ll_log" 2>&1
ll=$(grep -o 'Final estimate: PPL = [0-9.]* +/- [0-9.]*' "$ll_log" | awk '{print $5, $7}')
[ -n "$ll" ] || { echo "llama-perplexity printed no estimate:"; tail -20 "$ll_log"; exit 1; }
rm -f "$ll_log"
# llama.cpp multiplies with one int8 plane per activation block (our `q8`); ours by default with
# two (`fast`): both are printed, each against llama-perplexity.
for precision in ${PRECISIONS:-q8 fast f32}; do
  ours=$("$gpt" perplexity --model "$model" --ctx "$ctx" --threads "$threads" --precision "$precision" --json "$text")
  python3 - "$ll" "$ours" "$(basename "$model")" "$(basename "$text")" "$ctx" "$precision" <<'PY'
import json, sys
ll_ppl, ll_err = map(float, sys.argv[1].split())
o = json.loads(sys.argv[2])
name, text, ctx, precision = sys.argv[3:]
rel = o["perplexity"] / ll_ppl - 1
print(f"{name} on {text}, ctx {ctx}: llama-perplexity {ll_ppl:.4f} +/- {ll_err:.5f} | "
      f"gpt perplexity --precision {precision} {o['perplexity']:.4f} +/- {o['stderr']:.5f} "
      f"({o['scored_tokens']} tokens scored, {o['tokens_per_s']:.0f} tok/s) | difference {100 * rel:+.3f}%")
PY
done
