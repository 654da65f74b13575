"""The official `openai` Python client against a running `gpt serve`.

Run by scripts/openai_client_check.sh, which starts the servers. Each check prints one line;
the last line is `N passed, M failed`, and the exit code is non-zero if any check failed.
"""

import argparse
import json
import math
import subprocess
import sys
import traceback

import openai

PROMPT = "The three primary colors are"
CHAT = [{"role": "user", "content": "What is the capital of France?"}]

checks = []


def check(fn):
    checks.append(fn)
    return fn


@check
def models_list(c, a):
    ids = [m.id for m in c.models.list().data]
    assert a.model in ids, ids
    assert c.models.retrieve(a.model).id == a.model


@check
def chat_completion(c, a):
    r = c.chat.completions.create(model=a.model, messages=CHAT, temperature=0, max_tokens=32)
    ch = r.choices[0]
    assert ch.message.role == "assistant"
    assert "Paris" in ch.message.content, ch.message.content
    assert ch.finish_reason in ("stop", "length"), ch.finish_reason
    u = r.usage
    assert u.prompt_tokens > 0 and u.completion_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens


@check
def chat_streaming_equals_non_streaming(c, a):
    whole = c.chat.completions.create(model=a.model, messages=CHAT, temperature=0, max_tokens=32)
    parts, finish, usage = [], None, None
    stream = c.chat.completions.create(
        model=a.model, messages=CHAT, temperature=0, max_tokens=32, stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            if ch.delta.content:
                parts.append(ch.delta.content)
            if ch.finish_reason:
                finish = ch.finish_reason
    assert "".join(parts) == whole.choices[0].message.content, (parts, whole)
    assert finish == whole.choices[0].finish_reason
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens


@check
def completion_and_its_stream(c, a):
    r = c.completions.create(model=a.model, prompt=PROMPT, temperature=0, max_tokens=20)
    text = r.choices[0].text
    assert text and r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 20
    streamed = "".join(
        ch.choices[0].text
        for ch in c.completions.create(model=a.model, prompt=PROMPT, temperature=0,
                                       max_tokens=20, stream=True)
        if ch.choices
    )
    assert streamed == text, (streamed, text)


@check
def greedy_equals_gpt_generate(c, a):
    n = 32
    out = subprocess.run(
        [a.gpt, "generate", PROMPT, "--model", a.model_arg, "--temperature", "0",
         "--max-tokens", str(n), "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    want = json.loads(out)
    r = c.completions.create(model=a.model, prompt=PROMPT, temperature=0, max_tokens=n)
    assert r.choices[0].text == want["text"], (r.choices[0].text, want["text"])
    assert r.usage.prompt_tokens == len(want["prompt_ids"])
    assert r.usage.completion_tokens == len(want["ids"])


@check
def embeddings(c, a):
    texts = ["The cat sat on the mat.", "A cat was sitting on a mat.", "Stock markets fell sharply."]
    # The client asks for base64 by default and decodes it.
    r = c.embeddings.create(model=a.model, input=texts)
    vecs = [d.embedding for d in r.data]
    assert len(vecs) == 3 and len(vecs[0]) > 0
    for v in vecs:
        assert abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-3
    f = c.embeddings.create(model=a.model, input=texts[0], encoding_format="float")
    assert max(abs(x - y) for x, y in zip(f.data[0].embedding, vecs[0])) < 1e-6
    dot = lambda u, v: sum(x * y for x, y in zip(u, v))
    assert dot(vecs[0], vecs[1]) > dot(vecs[0], vecs[2])
    assert r.usage.prompt_tokens > 0


@check
def chat_logprobs(c, a):
    r = c.chat.completions.create(model=a.model, messages=CHAT, temperature=0, max_tokens=8,
                                  logprobs=True, top_logprobs=5)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 5
        lps = [x.logprob for x in t.top_logprobs]
        assert lps == sorted(lps, reverse=True)
        # Greedy: the chosen token is the most likely one.
        assert t.logprob >= lps[0] - 1e-4, (t, lps)
        assert bytes(t.bytes).decode("utf-8", "replace") == t.token or t.token.startswith("<|")
    assert sum(math.exp(x.logprob) for x in content[0].top_logprobs) <= 1.0 + 1e-4


@check
def completion_logprobs(c, a):
    r = c.completions.create(model=a.model, prompt=PROMPT, temperature=0, max_tokens=6, logprobs=3)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 6
    assert all(len(t) <= 3 for t in lp.top_logprobs)
    assert "".join(lp.tokens) == r.choices[0].text


@check
def seed_reproduces_and_stop_cuts(c, a):
    kw = dict(model=a.model, prompt="Once upon a time", temperature=1.0, max_tokens=24)
    x = c.completions.create(seed=42, **kw).choices[0].text
    y = c.completions.create(seed=42, **kw).choices[0].text
    assert x == y, (x, y)
    r = c.completions.create(model=a.model, prompt="1, 2, 3, 4,", temperature=0, max_tokens=30,
                             stop=[" 7"])
    assert " 7" not in r.choices[0].text and r.choices[0].finish_reason == "stop"


@check
def errors_map_to_client_exceptions(c, a):
    try:
        c.chat.completions.create(model="no-such-model", messages=CHAT)
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError as e:
        assert e.body["code"] == "model_not_found", e.body
    try:
        c.completions.create(model=a.model, prompt="word " * 5000, max_tokens=4)
        raise AssertionError("prompt beyond the context accepted")
    except openai.BadRequestError as e:
        assert e.body["code"] == "context_length_exceeded", e.body


@check
def api_key_is_required(c, a):
    if not a.keyed_base_url:
        return
    no_key = openai.OpenAI(base_url=a.keyed_base_url, api_key="wrong-key", max_retries=0)
    try:
        no_key.models.list()
        raise AssertionError("a wrong key was accepted")
    except openai.AuthenticationError:
        pass
    good = openai.OpenAI(base_url=a.keyed_base_url, api_key=a.api_key, max_retries=0)
    r = good.chat.completions.create(model=a.model, messages=CHAT, max_tokens=4)
    assert r.choices[0].message.content is not None


def scrape(base_url, api_key):
    """GET /metrics, parsed by the Prometheus client library's own text-format parser."""
    import urllib.request
    from prometheus_client.parser import text_string_to_metric_families

    root = base_url.rsplit("/v1", 1)[0]
    req = urllib.request.Request(root + "/metrics", headers={"Authorization": f"Bearer {api_key}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers
        text = r.read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return values


@check
def json_schema_outputs_validate(c, a):
    """Every schema of tests/schemas/: the answer parses and validates (jsonschema package),
    greedy and sampled, streamed and not."""
    import jsonschema
    from pathlib import Path
    files = sorted((Path(__file__).parent / "schemas").glob("*.json"))
    assert len(files) >= 10, files
    for i, f in enumerate(files):
        case = json.loads(f.read_text(encoding="utf-8"))
        fmt = {"type": "json_schema", "json_schema": {"name": f.stem.replace("-", "_"), "schema": case["schema"], "strict": True}}
        msgs = [{"role": "user", "content": case["prompt"]}]
        stream = i % 2 == 1
        kw = dict(model=a.model, messages=msgs, response_format=fmt, max_tokens=200,
                  temperature=0 if i % 3 == 0 else 0.8, seed=i)
        if stream:
            text, finish = "", None
            for chunk in c.chat.completions.create(stream=True, **kw):
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                    finish = chunk.choices[0].finish_reason or finish
        else:
            r = c.chat.completions.create(**kw)
            text, finish = r.choices[0].message.content, r.choices[0].finish_reason
        assert finish == "stop", (f.name, finish, text)
        jsonschema.validate(json.loads(text), case["schema"])


TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "maxLength": 30},
            "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "convert", "description": "Convert an amount between currencies",
        "parameters": {"type": "object", "properties": {
            "amount": {"type": "number", "minimum": 0, "maximum": 1000000},
            "from": {"type": "string", "maxLength": 3}, "to": {"type": "string", "maxLength": 3}},
            "required": ["amount", "from", "to"], "additionalProperties": False}}},
]


@check
def required_tool_calls_validate_and_results_round_trip(c, a):
    """tool_choice required (streamed and not) and named: one call whose arguments validate
    against the function's parameters (jsonschema); then the tool's result goes back and the
    model answers in text."""
    import jsonschema
    params = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    msgs = [{"role": "user", "content": "What's the weather like in Seoul today?"}]
    r = c.chat.completions.create(model=a.model, messages=msgs, tools=TOOLS, tool_choice="required",
                                  temperature=0, max_tokens=100)
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls", ch
    (call,) = ch.message.tool_calls
    assert call.type == "function" and call.id
    jsonschema.validate(json.loads(call.function.arguments), params[call.function.name])
    # Streamed: the call arrives as delta.tool_calls.
    name, args, finish = None, "", None
    for chunk in c.chat.completions.create(model=a.model, messages=msgs, tools=TOOLS, tool_choice="required",
                                           temperature=0.7, seed=4, max_tokens=100, stream=True):
        if not chunk.choices:
            continue
        d = chunk.choices[0].delta
        for tc in d.tool_calls or []:
            name = tc.function.name or name
            args += tc.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and name in params, (finish, name)
    jsonschema.validate(json.loads(args), params[name])
    # Named.
    r = c.chat.completions.create(model=a.model, tools=TOOLS, temperature=0, max_tokens=100,
                                  messages=[{"role": "user", "content": "How much is 20 euros in dollars?"}],
                                  tool_choice={"type": "function", "function": {"name": "convert"}})
    (named,) = r.choices[0].message.tool_calls
    assert named.function.name == "convert"
    jsonschema.validate(json.loads(named.function.arguments), params["convert"])
    # The result goes back.
    follow = msgs + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function",
             "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 3, "sky": "clear"})},
    ]
    r = c.chat.completions.create(model=a.model, messages=follow, tools=TOOLS, tool_choice="none",
                                  temperature=0, max_tokens=40)
    assert r.choices[0].message.content and not r.choices[0].message.tool_calls, r.choices[0]


@check
def prompt_cache_reports_cached_tokens_and_changes_nothing(c, a):
    system = "You answer questions about the river and the old mill in one sentence. " * 30
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Who counts the sacks?"}]
    ask = lambda: c.chat.completions.create(model=a.model, messages=messages, temperature=0, max_tokens=8,
                                            logprobs=True, top_logprobs=3)
    first, again = ask(), ask()
    n = again.usage.prompt_tokens
    assert n > 400, n
    # All but the last prompt token come from the cache the first request left.
    assert again.usage.prompt_tokens_details.cached_tokens == n - 1, again.usage
    assert again.choices[0].message.content == first.choices[0].message.content
    lp = lambda r: [(t.token, t.logprob, [(x.token, x.logprob) for x in t.top_logprobs])
                    for t in r.choices[0].logprobs.content]
    assert lp(again) == lp(first), (lp(again), lp(first))


@check
def metrics_count_the_requests_sent(c, a):
    # The keyed server (one slot): its counts move by exactly what this check sends.
    if not a.keyed_base_url:
        return
    good = openai.OpenAI(base_url=a.keyed_base_url, api_key=a.api_key, max_retries=0)
    before = scrape(a.keyed_base_url, a.api_key)
    prompt = completion = cached = 0
    for i in range(3):
        r = good.completions.create(model=a.model, prompt=f"Count to {i}:", max_tokens=5, temperature=0)
        # Prompt tokens taken from the prompt cache are not run again.
        from_cache = r.usage.prompt_tokens_details.cached_tokens
        prompt += r.usage.prompt_tokens - from_cache
        completion += r.usage.completion_tokens
        cached += from_cache
    import time
    time.sleep(0.5)  # the slot is freed just after the last token is sent
    after = scrape(a.keyed_base_url, a.api_key)
    d = lambda name, **labels: after.get((name, tuple(sorted(labels.items()))), 0) - before.get(
        (name, tuple(sorted(labels.items()))), 0)
    ok = d("gpt_requests_total", endpoint="/v1/completions", status="200")
    assert ok == 3, ok
    assert d("gpt_prompt_tokens_total") == prompt, (d("gpt_prompt_tokens_total"), prompt)
    assert d("gpt_generated_tokens_total") == completion, (d("gpt_generated_tokens_total"), completion)
    assert d("gpt_prompt_cache_tokens_total") == cached, (d("gpt_prompt_cache_tokens_total"), cached)
    assert d("gpt_time_to_first_token_seconds_count") == 3
    assert d("gpt_inter_token_latency_seconds_count") == completion - 3
    assert after[("gpt_running_sequences", ())] == 0
    assert after[("gpt_slots", ())] == 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--keyed-base-url")
    p.add_argument("--api-key")
    p.add_argument("--model", required=True, help="the model id the server reports")
    p.add_argument("--model-arg", help="the --model argument of gpt generate (default: --model)")
    p.add_argument("--gpt", required=True, help="the gpt binary")
    a = p.parse_args()
    a.model_arg = a.model_arg or a.model
    c = openai.OpenAI(base_url=a.base_url, api_key="unused", max_retries=0, timeout=300)
    passed = failed = 0
    for fn in checks:
        try:
            fn(c, a)
            passed += 1
            print(f"ok   {fn.__name__}")
        except Exception:
            failed += 1
            print(f"FAIL {fn.__name__}")
            traceback.print_exc()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
