#!/usr/bin/env bash
# Runs every coverage-guided fuzz target of fuzz/ (libFuzzer through cargo-fuzz, on the stable
# toolchain: no sanitizer, coverage from -C passes=sancov-module). Seeds come from real files of
# the repository (the architecture fixtures' GGUF files and Hugging Face folders, tokenizers,
# chat templates, the training configs, a token file gpt train writes); crashes and the inputs
# that caused them land in fuzz/artifacts/TARGET/.
#
#   scripts/fuzz.sh                 # each target for 60 s
#   scripts/fuzz.sh --seconds 20    # each target for 20 s (CI)
#   scripts/fuzz.sh --runs 1000000  # each target for 1,000,000 inputs
#   scripts/fuzz.sh --runs 1000000 gguf tokenizer_json   # some targets only
#
# Prints one line per target: inputs run, time, coverage (libFuzzer's cov: and ft:), and exits
# non-zero if any target found a crash, a hang (-timeout, 10 s), or an allocation above the cap.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
limit=(-max_total_time=60)
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) limit=(-max_total_time="$2"); shift 2 ;;
    --runs) limit=(-runs="$2"); shift 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(gguf hf_folder tokenizer_json gpt2_files chat_template train_config token_file http_bodies)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

fx="$root/crates/gpt/tests/fixtures"
seeds="$root/target/fuzz-seeds"
rm -rf "$seeds"
mkdir -p "$seeds"
seed() { mkdir -p "$seeds/$1"; cat > "$seeds/$1/$2"; }
for d in "$fx"/arch/*/; do
  a=$(basename "$d")
  for g in "$d"*.gguf; do seed gguf "$a-$(basename "$g")" < "$g"; done
  if [ -f "$d/hf/model.safetensors" ]; then
    { cat "$d/hf/config.json"; printf '\0'; cat "$d/hf/model.safetensors"; } | seed hf_folder "$a"
    seed tokenizer_json "$a" < "$d/hf/tokenizer.json"
    seed chat_template "$a-config" < "$d/hf/config.json"
    python3 -c 'import json,sys; t=json.load(open(sys.argv[1])).get("chat_template"); print(t if isinstance(t,str) else "", end="")' \
      "$d/hf/tokenizer_config.json" 2>/dev/null | seed chat_template "$a-template" || true
  fi
done
for f in $(find "$fx" -name encoder.json | head -4); do
  { cat "$f"; printf '\0'; cat "$(dirname "$f")/vocab.bpe"; } | seed gpt2_files "$(basename "$(dirname "$f")")"
done
for c in configs/*.toml "$fx"/hostile/train-*/train.toml; do seed train_config "$(echo "$c" | tr / _)" < "$c"; done
# A token file as gpt train writes it: magic, version, bytes per token, count, then the ids.
python3 - "$seeds/token_file" <<'PY'
import os, struct, sys
os.makedirs(sys.argv[1], exist_ok=True)
for width, n in [(2, 64), (4, 16)]:
    ids = [(i * 37) % 300 for i in range(n)]
    body = b"".join(struct.pack("<H" if width == 2 else "<I", i) for i in ids)
    open(os.path.join(sys.argv[1], f"w{width}"), "wb").write(b"GPTRSTOK" + struct.pack("<IIQ", 1, width, n) + body)
PY

# Request bodies: the first byte picks the endpoint (fuzz/src/lib.rs ENDPOINTS, in order).
python3 - "$seeds/http_bodies" <<'PY'
import json, os, sys
os.makedirs(sys.argv[1], exist_ok=True)
chat = {"model": "m", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 4, "temperature": 0.7, "top_p": 0.9, "seed": 1, "stop": ["\n"], "logprobs": True, "top_logprobs": 2}
bodies = [
    (0, chat), (0, dict(chat, stream=True, stream_options={"include_usage": True})),
    (0, dict(chat, response_format={"type": "json_object"})),
    (0, dict(chat, tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}}], tool_choice="required")),
    (1, {"prompt": "Once", "max_tokens": 4, "logprobs": 2, "echo": True}), (1, {"prompt": [1, 2, 3], "max_tokens": 3, "stream": True}),
    (1, {"prompt": "a", "max_tokens": 3, "regex": "[0-9]+"}),
    (2, {"input": ["a cat", "a dog"]}), (3, {"prompt": "Tokens are not words", "add_special_tokens": True}),
    (4, {"tokens": [1, 2, 3]}), (5, {"text": "The fluffy creature", "layer": 0, "head": 0}),
    (6, {"prompt": "Tokens"}), (7, {"prompt": "a cat"}), (8, {"a": "cat", "b": "#5"}),
    (9, {"direction": "a - b", "words": ["c", "d"]}), (10, {"prompt": "The cat", "layer": 1, "pool": 2}),
    (11, {"prompt": "The cat", "top": 2}), (12, {"prompt": "The cat", "top": 3}),
    (13, {"prompt": "The cat", "temperatures": [0, 0.7], "top": 4}),
]
for i, (pick, b) in enumerate(bodies):
    open(os.path.join(sys.argv[1], f"b{i}"), "wb").write(bytes([pick]) + json.dumps(b).encode())
PY

status=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="$root/target/fuzz-$t.log"
  start=$(date +%s)
  if (cd fuzz && cargo fuzz run --sanitizer none --release "$t" "corpus/$t" "$seeds/$t" -- \
        "${limit[@]}" -timeout=10 -rss_limit_mb=4096 -max_len=400000 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/") >"$log" 2>&1; then
    result=ok
  else
    result=FAILED; status=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || echo 'cov: ?')
  echo "$t: $result, $runs inputs in $(( $(date +%s) - start )) s, $cov (log: target/fuzz-$t.log)"
  [ "$result" = ok ] || tail -20 "$log"
done
exit $status
