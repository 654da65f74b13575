#!/usr/bin/env bash
# What the prompt cache saves: time to first token of a chat's second turn, and of another
# question under the same long system prompt, on `gpt serve` with the cache on and off (median of
# ROUNDS, streamed, greedy). The first turn of each round runs with a new system prompt, so every
# round starts from nothing cached.
#
# Usage: bench/prompt_cache.sh [MODEL] [SYSTEM_REPEATS]   (default: the default model, 20 repeats of
# a 30-token sentence: a ~620-token prompt; ROUNDS=5)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p gpt-cli
python3 - "$root/target/release/gpt" "${1:-smollm2-135m-instruct}" "${2:-20}" "${ROUNDS:-5}" <<'PY'
import json, socket, statistics, subprocess, sys, time, urllib.request
gpt, model, repeats, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def first_token(port, messages):
    """Seconds to the first streamed content chunk, and the usage of the whole answer."""
    body = json.dumps({"model": "m", "messages": messages, "max_tokens": 8, "temperature": 0,
                       "stream": True, "stream_options": {"include_usage": True}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", body,
                                 {"Content-Type": "application/json"})
    t0, ttft, usage, text = time.perf_counter(), None, None, ""
    with urllib.request.urlopen(req) as r:
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for c in chunk.get("choices", []):
                if c["delta"].get("content") and ttft is None:
                    ttft = time.perf_counter() - t0
                text += c["delta"].get("content") or ""
    return ttft, usage, text

results = {}
for cache_mib in (1024, 0):
    port = free_port()
    server = subprocess.Popen([gpt, "serve", "--model", model, "--port", str(port), "--model-id", "m",
                               "--cache-ram", str(cache_mib)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health")
                break
            except OSError:
                time.sleep(0.1)
        times = {"first turn": [], "second turn": [], "same system prompt": []}
        cached = {k: 0 for k in times}
        prompt_tokens = 0
        for r in range(rounds + 1):  # round 0 warms up
            system = f"Session {r}. " + ("You are a careful assistant who knows the river, the old mill "
                                         "and the miller's sacks of grain, and answers briefly. ") * repeats
            first = [{"role": "system", "content": system}, {"role": "user", "content": "Who counts the sacks?"}]
            t1, u1, reply = first_token(port, first)
            second = first + [{"role": "assistant", "content": reply},
                              {"role": "user", "content": "And who grinds it?"}]
            other = [{"role": "system", "content": system}, {"role": "user", "content": "Where does the river run?"}]
            t2, u2, _ = first_token(port, second)
            t3, u3, _ = first_token(port, other)
            if r == 0:
                continue
            prompt_tokens = u2["prompt_tokens"]
            for k, t, u in (("first turn", t1, u1), ("second turn", t2, u2), ("same system prompt", t3, u3)):
                times[k].append(t)
                cached[k] = u["prompt_tokens_details"]["cached_tokens"]
        results[cache_mib] = {k: (statistics.median(v), cached[k]) for k, v in times.items()}
    finally:
        server.terminate()
        server.wait()

print(f"model {model}, second-turn prompt {prompt_tokens} tokens, median of {rounds} rounds, time to first token")
print("| request | cache off | cache on (cached tokens) | speed-up |")
print("|---|---|---|---|")
for k in results[0]:
    off, _ = results[0][k]
    on, n = results[1024][k]
    print(f"| {k} | {off * 1000:.0f} ms | {on * 1000:.0f} ms ({n}) | {off / on:.1f}x |")
PY
