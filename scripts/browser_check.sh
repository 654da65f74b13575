#!/usr/bin/env bash
# The page at `/` in headless Chromium: Debian's chromium (apt-get) driven by playwright-core
# (npm, installed in $TARGET/browser-test; its own browser download is never used).
#
# Starts `gpt serve` on a free loopback port, runs crates/gpt-server/tests/browser_test.cjs
# (send a message, see the streamed reply and the probability bars, move the temperature
# slider and see the bars change, draw an attention pattern) and saves a screenshot as
# $TARGET/browser-check.png; then crates/gpt-server/tests/explain_test.cjs (the walk-through at
# /explain, screenshots in $TARGET/explain-screenshots). Prints `N passed, M failed` for each;
# exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-target}"
GPT="${GPT_BIN:-$TARGET/release/gpt}"
MODEL="${MODEL:-smollm2-135m-instruct}"
[ -x "$GPT" ] || cargo build --release -p gpt-cli
if ! command -v chromium >/dev/null; then
  apt-get install -y chromium >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y chromium >/dev/null; }
fi
# A machine with only Debian's packages gets Node.js and npm from Debian too.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt-get install -y nodejs npm >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y nodejs npm >/dev/null; }
fi
DIR="$TARGET/browser-test"
mkdir -p "$DIR"
if [ ! -d "$DIR/node_modules/playwright-core" ]; then
  (cd "$DIR" && { [ -f package.json ] || npm init -y >/dev/null; } && npm install --no-audit --no-fund --silent playwright-core)
fi
case "$MODEL" in */*|*.gguf) ;; *) "$GPT" pull "$MODEL" >/dev/null ;; esac

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$GPT" serve --model "$MODEL" --port "$PORT" --parallel 2 >"$TARGET/browser-serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 600); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/health', timeout=1)" 2>/dev/null && break
  sleep 0.1
done
STATUS=0
NODE_PATH="$(cd "$DIR" && pwd)/node_modules" node crates/gpt-server/tests/browser_test.cjs \
  "http://127.0.0.1:$PORT" "$(cd "$TARGET" && pwd)/browser-check.png" || STATUS=1
# The walk-through at /explain: every step in English and Korean, and the values it shows
# against `gpt inspect ... --json` (hence GPT_BIN and MODEL); a screenshot per step.
mkdir -p "$TARGET/explain-screenshots"
GPT_BIN="$(cd "$(dirname "$GPT")" && pwd)/$(basename "$GPT")" MODEL="$MODEL" \
  NODE_PATH="$(cd "$DIR" && pwd)/node_modules" node crates/gpt-server/tests/explain_test.cjs \
  "http://127.0.0.1:$PORT" "$(cd "$TARGET" && pwd)/explain-screenshots" || STATUS=1
exit $STATUS
