#!/usr/bin/env bash
# What constrained decoding costs per token: generation tokens/s of the same model and prompt
# without a constraint, with a regular expression, and with JSON schemas, each grammar open-ended
# enough to run the whole budget (so every step computes a mask). Median of ROUNDS runs, greedy.
#
# Usage: bench/constraint.sh [MODEL] [TOKENS]   (default: the default model, 64 tokens; ROUNDS=5)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p gpt-cli
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo '{"type":"array","items":{"type":"string"},"minItems":40}' > "$tmp/strings.schema.json"
cat > "$tmp/records.schema.json" <<'JSON'
{"type":"array","items":{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},
 "tags":{"type":"array","items":{"enum":["a","b","c"]}},"address":{"$ref":"#/$defs/address"}},
 "required":["name","age"],"additionalProperties":false},"minItems":10,
 "$defs":{"address":{"type":"object","properties":{"street":{"type":"string"},"zip":{"type":"string","pattern":"^[0-9]{5}$"}}}}}
JSON
python3 - "$root/target/release/gpt" "${1:-smollm2-135m-instruct}" "${2:-64}" "${ROUNDS:-5}" "$tmp" <<'PY'
import json, statistics, subprocess, sys
gpt, model, n, rounds, tmp = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
prompt = "Here is a list of people, as JSON: "
runs = [("none", []), ("regex [a-z ,.]*", ["--regex", "[a-z ,.]*"]),
        ("JSON schema: array of strings (minItems 40)", ["--json-schema", f"{tmp}/strings.schema.json"]),
        ("JSON schema: records with $ref, enum, pattern (minItems 10)", ["--json-schema", f"{tmp}/records.schema.json"])]
print(f"model {model}, {n} tokens, greedy, median of {rounds}")
print("| constraint | generated | tok/s | vs none |")
print("|---|---|---|---|")
base = None
for name, flags in runs:
    rates, count = [], 0
    for _ in range(rounds):
        out = subprocess.run([gpt, "generate", prompt, "--model", model, "-n", n, "--temperature", "0",
                              "--json", *flags], check=True, capture_output=True, text=True)
        r = json.loads(out.stdout)
        count = len(r["ids"])
        rates.append(count / r["decode_seconds"])
    med = statistics.median(rates)
    base = base or med
    print(f"| {name} | {count} | {med:.1f} | {med / base:.3f}x |")
PY
