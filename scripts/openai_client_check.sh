#!/usr/bin/env bash
# The official `openai` Python client against `gpt serve` on loopback.
#
# Creates a virtual environment ($TARGET/venv-openai) with `openai` (and `prometheus_client`, whose
# parser reads /metrics, and `jsonschema`, which validates constrained answers) from PyPI, starts two
# servers on free loopback ports (one open, one with --api-key), runs
# crates/gpt-server/tests/openai_client_test.py against them, then stops the open one with
# SIGTERM and checks that it exits cleanly. Prints `N passed, M failed`; exits non-zero on any
# failure.
#
#   scripts/openai_client_check.sh          (builds target/release/gpt if it is missing)
#   GPT_BIN=path/to/gpt MODEL=model.gguf scripts/openai_client_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-target}"
GPT="${GPT_BIN:-$TARGET/release/gpt}"
MODEL="${MODEL:-smollm2-135m-instruct}"
[ -x "$GPT" ] || cargo build --release -p gpt-cli
VENV="$TARGET/venv-openai"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import openai, prometheus_client, jsonschema" 2>/dev/null ||
  "$VENV/bin/pip" install --quiet openai prometheus_client jsonschema
# A known name is fetched into the cache once (a file path is used as it is).
case "$MODEL" in */*|*.gguf) ;; *) "$GPT" pull "$MODEL" >/dev/null ;; esac

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
P1=$(free_port); P2=$(free_port)
KEY="sk-check-$RANDOM$RANDOM"
LOG="$TARGET/openai-check"
mkdir -p "$LOG"
"$GPT" serve --model "$MODEL" --port "$P1" --parallel 4 >"$LOG/serve.log" 2>&1 &
S1=$!
GPT_RS_API_KEY="$KEY" "$GPT" serve --model "$MODEL" --port "$P2" --parallel 1 >"$LOG/serve-key.log" 2>&1 &
S2=$!
trap 'kill $S1 $S2 2>/dev/null || true' EXIT
wait_up() {
  for _ in $(seq 600); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$1/health', timeout=1)" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "server on port $1 did not start:"; cat "$LOG"/serve*.log; return 1
}
wait_up "$P1"; wait_up "$P2"
MODEL_ID=$(python3 -c "import json, urllib.request; print(json.load(urllib.request.urlopen('http://127.0.0.1:$P1/v1/models'))['data'][0]['id'])")

"$VENV/bin/python" crates/gpt-server/tests/openai_client_test.py \
  --base-url "http://127.0.0.1:$P1/v1" --keyed-base-url "http://127.0.0.1:$P2/v1" \
  --api-key "$KEY" --model "$MODEL_ID" --model-arg "$MODEL" --gpt "$GPT" | tee "$LOG/client.txt" >/dev/null || true
sed '$d' "$LOG/client.txt"
passed=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$LOG/client.txt" | tail -1)
failed=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$LOG/client.txt" | tail -1)
# No summary line: the client script itself broke.
passed=${passed:-0}; failed=${failed:-1}

# Graceful shutdown: SIGTERM while a stream is running; the stream ends with [DONE] and the
# server exits 0.
curl_stream() {
  python3 - "$P1" "$LOG/shutdown-started" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v1/completions",
    data=json.dumps({"prompt": "Count to fifty: one, two,", "max_tokens": 300, "stream": True}).encode(),
    headers={"Content-Type": "application/json"})
r = urllib.request.urlopen(req, timeout=120)
first = r.readline()
open(sys.argv[2], "w").write("started")  # the stream is running: now the signal
body = (first + r.read()).decode()
print("stream-ended-with-done" if body.rstrip().endswith("data: [DONE]") else "stream-broken")
PY
}
rm -f "$LOG/shutdown-started"
curl_stream >"$LOG/shutdown-stream.txt" &
READER=$!
# The signal goes once the stream is running (a loaded machine may start the reader late).
for _ in $(seq 600); do [ -f "$LOG/shutdown-started" ] && break; sleep 0.1; done
kill -TERM "$S1"
rc=0; wait "$S1" || rc=$?
wait "$READER" || true
if [ "$rc" -eq 0 ] && grep -q stream-ended-with-done "$LOG/shutdown-stream.txt"; then
  echo "ok   sigterm_finishes_the_running_stream_and_exits_0"
  passed=$((passed + 1))
else
  echo "FAIL sigterm_finishes_the_running_stream_and_exits_0 (exit $rc, $(cat "$LOG/shutdown-stream.txt"))"
  failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
