#!/usr/bin/env python3
"""Load test of `gpt serve` on loopback: continuous batching against one-at-a-time serving.

For each configuration (--parallel 32, then --parallel 1) the script starts its own server on a
free loopback port, runs CLIENTS concurrent streaming clients that each send REQUESTS
completions one after another (bounded: CLIENTS x REQUESTS requests, each with a timeout, and a
deadline for the whole run), and reports:
- errors: anything but HTTP 200, apart from documented 503s (queue full, retried after
  Retry-After; counted separately);
- the server's peak resident memory (VmHWM of its process);
- aggregate generated tokens per second (usage.completion_tokens summed over all requests,
  divided by the wall time of the run), time to first token, and the mean decode batch size
  (from /health).
The bar of the issue: batching gives at least 2x the aggregate throughput of sequential serving.

  python3 bench/serve_load.py [--gpt target/release/gpt] [--clients 32] [--requests 8]
                              [--max-tokens 48] [--parallel 32] [--json]

Standard library only.
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

PROMPTS = [
    "Once upon a time, in a small village by the sea,",
    "The most important thing to know about volcanoes is",
    "Here is a short poem about the autumn rain:\n",
    "def quicksort(items):",
    "The history of the printing press begins",
    "My favourite recipe for a rainy day is",
    "In 1969, the first humans to walk on the Moon",
    "A good way to learn a new language is",
]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def peak_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def get_json(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", path)
    r = c.getresponse()
    return json.loads(r.read())


def stream_one(port, body, timeout):
    """One streaming completion. Returns (status, completion_tokens, ttft_seconds, retry_after)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    t0 = time.perf_counter()
    c.request("POST", "/v1/completions", body=json.dumps(body),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        r.read()
        return r.status, 0, None, r.getheader("Retry-After")
    ttft, tokens, done = None, 0, False
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            break
        chunk = json.loads(data)
        if "error" in chunk:
            return 500, 0, None, None
        if ttft is None and chunk.get("choices"):
            ttft = time.perf_counter() - t0
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
    c.close()
    return (200 if done else 599), tokens, ttft, None


def run(args, parallel):
    port = free_port()
    log = open(os.path.join(args.log_dir, f"serve-load-parallel{parallel}.log"), "w")
    server = subprocess.Popen(
        [args.gpt, "serve", "--model", args.model, "--port", str(port), "--parallel", str(parallel),
         "--queue", str(args.clients * 2), "--ctx", "512"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            try:
                get_json(port, "/health")
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the server did not start")
        # One request to warm up (page in the weights) before timing.
        stream_one(port, {"prompt": "Hello", "max_tokens": 4, "stream": True}, 60)
        h0 = get_json(port, "/health")

        lock = threading.Lock()
        results = {"tokens": 0, "ok": 0, "errors": [], "retried_503": 0, "ttft": []}
        deadline = time.perf_counter() + args.deadline

        def client(i):
            for j in range(args.requests):
                body = {"prompt": PROMPTS[(i + j) % len(PROMPTS)], "max_tokens": args.max_tokens,
                        "temperature": args.temperature, "seed": i * 1000 + j, "stream": True,
                        "stream_options": {"include_usage": True}}
                while True:
                    if time.perf_counter() > deadline:
                        with lock:
                            results["errors"].append("deadline")
                        return
                    try:
                        status, tokens, ttft, retry = stream_one(port, body, args.timeout)
                    except Exception as e:  # a timeout or a broken connection is an error
                        status, tokens, ttft, retry = repr(e), 0, None, None
                    if status == 503:
                        with lock:
                            results["retried_503"] += 1
                        time.sleep(float(retry or 1))
                        continue
                    with lock:
                        if status == 200:
                            results["ok"] += 1
                            results["tokens"] += tokens
                            results["ttft"].append(ttft)
                        else:
                            results["errors"].append(status)
                    break

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        h1 = get_json(port, "/health")
        steps = h1["decode_steps"] - h0["decode_steps"]
        batched = h1["decode_tokens"] - h0["decode_tokens"]
        return {
            "parallel": parallel,
            "requests_ok": results["ok"],
            "errors": len(results["errors"]),
            "error_kinds": sorted(set(map(str, results["errors"]))),
            "retried_503": results["retried_503"],
            "completion_tokens": results["tokens"],
            "wall_seconds": round(wall, 2),
            "tokens_per_second": round(results["tokens"] / wall, 1),
            "ttft_p50_seconds": round(statistics.median(results["ttft"]), 3) if results["ttft"] else None,
            "mean_decode_batch": round(batched / steps, 2) if steps else 0,
            "peak_rss_mib": round(peak_rss(server.pid) / 2**20, 1),
        }
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    p.add_argument("--gpt", default=os.environ.get("GPT_BIN", os.path.join(target, "release", "gpt")))
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--parallel", type=int, default=32, help="slots of the batching server")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--timeout", type=float, default=600, help="seconds per request")
    p.add_argument("--deadline", type=float, default=1800, help="seconds per configuration")
    p.add_argument("--log-dir", default=target)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    batched = run(args, args.parallel)
    sequential = run(args, 1)
    ratio = batched["tokens_per_second"] / max(sequential["tokens_per_second"], 1e-9)
    report = {"clients": args.clients, "requests_per_client": args.requests,
              "max_tokens": args.max_tokens, "batched": batched, "sequential": sequential,
              "speedup": round(ratio, 2)}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{args.clients} streaming clients x {args.requests} requests, max_tokens {args.max_tokens}")
        for r in (batched, sequential):
            print(f"--parallel {r['parallel']:>2}: {r['tokens_per_second']:7.1f} tok/s aggregate "
                  f"({r['completion_tokens']} tokens in {r['wall_seconds']} s), "
                  f"mean batch {r['mean_decode_batch']}, TTFT p50 {r['ttft_p50_seconds']} s, "
                  f"peak RSS {r['peak_rss_mib']} MiB, {r['requests_ok']} ok, "
                  f"{r['errors']} errors {r['error_kinds']}, {r['retried_503']} 503s retried")
        print(f"batching speedup: {ratio:.2f}x (bar: 2x)")
    ok = batched["errors"] == 0 and sequential["errors"] == 0 and ratio >= 2.0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
