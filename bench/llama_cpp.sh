#!/usr/bin/env bash
# Measures llama.cpp beside gpt-rs on the same model file, in the same run.
#
# llama.cpp comes from the Python package llama-cpp-python (its source distribution vendors
# llama.cpp): bench/llama_cpp_build.sh fetches the sdist with pip and builds llama.cpp's `llama-bench`
# with cmake (from pip, in a virtual environment under bench/.venv) for this CPU's AVX2/AVX-512/VNNI.
# Never in CI.
#
# Usage: bench/llama_cpp.sh [MODEL.gguf] [THREADS...]   (default: the default model; 1 and 2 threads)
# PROMPT=N sets the prompt length (default 128; tg is always 128 tokens).
# Prints both engines' ppN and tg128 tokens/s, the ratio gpt-rs / llama.cpp (ROUNDS=N: see below)
# and both peak RSS figures (llama-bench's whole run; `gpt bench`'s, read before its copy test).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
build="$here/.venv/llama.cpp-build"

"$here/llama_cpp_build.sh" llama-bench

cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p gpt-cli
gpt="$root/target/release/gpt"
if [ $# -gt 0 ]; then model="$1"; shift; else model="$("$gpt" pull smollm2-135m-instruct)"; fi
threads="${*:-1 2}"

# ROUNDS=N repeats each pair of runs N times, alternating the engines, and ends with the median
# of each ratio: on a shared machine a burst of load hits one run, not the comparison.
rounds="${ROUNDS:-1}"
prompt="${PROMPT:-128}"
for t in $threads; do
  ratios=()
  for _ in $(seq "$rounds"); do
    # llama-bench's peak RSS from its rusage (KiB), through python: /usr/bin/time is not everywhere.
    ll=$(python3 - "$build/bin/llama-bench" -m "$model" -t "$t" -p "$prompt" -n 128 -r 3 -o json <<'PY'
import json, resource, subprocess, sys
out = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True).stdout
rows = json.loads(out)
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps([dict(r, peak_rss_bytes=rss) for r in rows]))
PY
)
    ll_pp=$(python3 -c 'import json,sys; d=json.load(sys.stdin); print([r["avg_ts"] for r in d if r["n_prompt"]>0][0])' <<<"$ll")
    ll_tg=$(python3 -c 'import json,sys; d=json.load(sys.stdin); print([r["avg_ts"] for r in d if r["n_gen"]>0][0])' <<<"$ll")
    ours=$("$gpt" bench --model "$model" --threads "$t" -p "$prompt" -g 128 -r 3 --json)
    our_pp=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["pp_tokens_per_s"])' <<<"$ours")
    our_tg=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["tg_tokens_per_s"])' <<<"$ours")
    ll_rss=$(python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["peak_rss_bytes"])' <<<"$ll")
    our_rss=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["peak_rss_bytes"])' <<<"$ours")
    ratios+=("$ll_pp,$ll_tg,$our_pp,$our_tg")
    python3 - "$t" "$prompt" "$ll_pp" "$ll_tg" "$our_pp" "$our_tg" "$ll_rss" "$our_rss" <<'PY'
import sys
t, n, lp, lt, op, ot, lr, orr = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
mib = 2**20
print(f"threads={t}: llama.cpp pp{n} {lp:8.1f} tg128 {lt:7.1f} | gpt-rs pp{n} {op:8.1f} tg128 {ot:7.1f} | ratio pp {op/lp:5.2f}x tg {ot/lt:5.2f}x | peak RSS llama.cpp {lr/mib:.0f} MiB gpt-rs {orr/mib:.0f} MiB")
PY
  done
  if [ "$rounds" -gt 1 ]; then
    python3 - "$t" "${ratios[@]}" <<'PY'
import statistics, sys
t, runs = sys.argv[1], [list(map(float, r.split(","))) for r in sys.argv[2:]]
med = lambda xs: statistics.median(xs)
pp, tg = med([op / lp for lp, lt, op, ot in runs]), med([ot / lt for lp, lt, op, ot in runs])
print(f"threads={t}: median of {len(runs)} rounds: ratio pp {pp:5.2f}x tg {tg:5.2f}x")
PY
  fi
done
