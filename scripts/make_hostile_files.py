#!/usr/bin/env python3
"""Writes the hostile input files of crates/gpt/tests/fixtures/hostile/ (run from anywhere; only
the standard library). Each is a small file that is wrong in one way that once crashed or
exhausted gpt-rs (issue 10's table); tests/hostile_files.rs loads every case of cases.json and
expects a one-line error naming the file and the field."""
import json
from pathlib import Path

out = Path(__file__).resolve().parent.parent / "crates/gpt/tests/fixtures/hostile"
out.mkdir(parents=True, exist_ok=True)
cases = []


def case(path, load, errors, why):
    cases.append({"path": path, "load": load, "error": errors, "why": why})


def write(name, text):
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(text)


# A token id of 2^32 - 1: the reader once sized its table by the largest id (a 100 GB request).
huge = 4294967295
write("tokenizer-huge-id/tokenizer.json", json.dumps({
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": huge}, "merges": ["a b"]},
    "added_tokens": [],
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
}))
case("tokenizer-huge-id/tokenizer.json", "tokenizer.json", [str(huge), "tokenizer.json"],
     "token id 4294967295 in model.vocab")

write("encoder-huge-id/encoder.json", json.dumps({"a": 0, "b": huge}))
write("encoder-huge-id/vocab.bpe", "#version: 0.2\na b\n")
case("encoder-huge-id", "gpt2-files", [str(huge), "encoder.json"], "token id 4294967295 in encoder.json")

# 8,388,608 layers: the loader once reserved 7.6 GB before any tensor was checked.
gpt2 = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 8388608,
        "n_embd": 64, "n_head": 4, "vocab_size": 256, "n_positions": 64}
write("config-gpt2-layers/config.json", json.dumps(gpt2))
case("config-gpt2-layers/config.json", "config.json", ["n_layer", "8388608"], "n_layer 8388608")

llama = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_hidden_layers": 1 << 22,
         "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 64,
         "rms_norm_eps": 1e-5, "hidden_act": "silu"}
write("config-llama-layers/config.json", json.dumps(llama))
case("config-llama-layers/config.json", "config.json", ["num_hidden_layers", str(1 << 22)],
     "num_hidden_layers 4194304")

# GGUF files, rewritten from the tiny Llama 3.1 fixture (tests/fixtures/arch/llama31/model-Q4_K_M.gguf) by a
# minimal reader and writer of the format (version 3: header, key/values, tensor infos, aligned data).
import struct

FIXTURE = out.parent / "arch/llama31/model-Q4_K_M.gguf"
SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def read_gguf(path):
    d = path.read_bytes()
    o = 24
    n_tensors, n_kv = struct.unpack_from("<QQ", d, 8)

    def string(o):
        n = struct.unpack_from("<Q", d, o)[0]
        return d[o + 8:o + 8 + n].decode(), o + 8 + n

    def skip_value(t, o):
        if t == 8:
            return string(o)[1]
        if t == 9:
            et, n = struct.unpack_from("<IQ", d, o)
            o += 12
            for _ in range(n):
                o = skip_value(et, o)
            return o
        return o + SCALAR[t]

    kvs = []
    for _ in range(n_kv):
        start = o
        key, o = string(o)
        t = struct.unpack_from("<I", d, o)[0]
        o = skip_value(t, o + 4)
        kvs.append((key, d[start:o]))
    infos = []
    for _ in range(n_tensors):
        name, o = string(o)
        nd = struct.unpack_from("<I", d, o)[0]
        dims = list(struct.unpack_from(f"<{nd}Q", d, o + 4))
        o += 4 + 8 * nd
        ty, off = struct.unpack_from("<IQ", d, o)
        o += 12
        infos.append([name, dims, ty, off])
    data_start = (o + 31) // 32 * 32
    ends = sorted(i[3] for i in infos) + [len(d) - data_start]
    tensors = []
    for name, dims, ty, off in infos:
        size = min(e for e in ends if e > off) - off
        tensors.append([name, dims, ty, d[data_start + off:data_start + off + size], None])
    return kvs, tensors


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def write_gguf(name, kvs, tensors):
    """tensors: [name, dims, type, data, forced offset or None]"""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(raw for _, raw in kvs)
    body, offsets = b"", []
    for t in tensors:
        body += b"\0" * (-len(body) % 32)
        offsets.append(len(body) if t[4] is None else t[4])
        body += t[3]
    for t, off in zip(tensors, offsets):
        head += gguf_string(t[0]) + struct.pack("<I", len(t[1])) + struct.pack(f"<{len(t[1])}Q", *t[1])
        head += struct.pack("<IQ", t[2], off)
    head += b"\0" * (-len(head) % 32)
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    (out / name).write_bytes(head + body)


kvs, tensors = read_gguf(FIXTURE)
# A 0-dimensional bias: the loader once indexed dims[0] of it and panicked.
write_gguf("gguf-zero-dim-bias.gguf", kvs, tensors + [["blk.0.ffn_gate.bias", [], 0, struct.pack("<f", 0.0), None]])
case("gguf-zero-dim-bias.gguf", "gguf-model", ["blk.0.ffn_gate.bias"], "a 0-dimensional bias tensor")
# Two tensors on the same bytes: once accepted, silently computing with the wrong weights.
k = next(t for t in tensors if t[0] == "blk.0.attn_k.weight")
overlap = [list(t) for t in tensors]
for t in overlap:
    if t[0] == "blk.0.attn_v.weight":
        t[4] = sum(len(x[3]) + (-len(x[3]) % 32) for x in tensors[:tensors.index(k)])
write_gguf("gguf-overlapping-tensors.gguf", kvs, overlap)
case("gguf-overlapping-tensors.gguf", "gguf-model", ["overlap", "attn_k", "attn_v", "gguf-overlapping-tensors.gguf"],
     "two tensors sharing their data")
# A metadata array of 2^24 u8 (the file ends after its header): once decoded at 32 bytes per
# element before any check (a 40 MB file took 1.27 GB).
huge_array = [("general.junk", gguf_string("general.junk") + struct.pack("<IIQ", 9, 0, 1 << 24))]
(out / "gguf-huge-array.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + huge_array[0][1] + b"\0" * 64)
case("gguf-huge-array.gguf", "gguf-model", ["16777216", "gguf-huge-array.gguf"], "a u8 array of 2^24 elements")
# The 0-dimensional bias row's other half: feed_forward_length 1 with ffn tensors of 256.
kv1 = [(k, raw) if k != "llama.feed_forward_length" else (k, gguf_string(k) + struct.pack("<II", 4, 1)) for k, raw in kvs]
write_gguf("gguf-ffn-length-mismatch.gguf", kv1, tensors)
case("gguf-ffn-length-mismatch.gguf", "gguf-model", ["ffn"], "feed_forward_length 1 against 256-wide MLP tensors")

# NaN weights: once run to NaN logits, sampled as if they were scores (garbage text, no error).
# A norm's f32 gain, and the f16 scale of a quantized block of the query projection.
def with_data(name, edit):
    return [t[:3] + [edit(t) if t[0] == name else t[3]] + t[4:] for t in tensors]
nan_norm = with_data("blk.0.attn_norm.weight", lambda t: struct.pack("<f", float("nan")) * (len(t[3]) // 4))
write_gguf("gguf-nan-norm.gguf", kvs, nan_norm)
case("gguf-nan-norm.gguf", "gguf-forward", ["not finite", "norm", "block 0"], "NaN in blk.0.attn_norm.weight")
q = next(t for t in tensors if t[0] == "blk.0.attn_q.weight")
assert q[2] in (2, 3, 6, 7, 8, 12, 13, 14), "the query projection is quantized with an f16 scale first"
nan_scale = with_data("blk.0.attn_q.weight", lambda t: b"\x00\x7e" + t[3][2:])
write_gguf("gguf-nan-scale.gguf", kvs, nan_scale)
case("gguf-nan-scale.gguf", "gguf-forward", ["not finite", "blk.0.attn_q.weight"], "an f16 NaN as a block's scale")

# Chat templates that once hung the server (no fuel) or built gigabytes.
write("template-nested-loops.jinja",
      "{% for a in range(100000) %}{% for b in range(100000) %}{{ a }}{% endfor %}{% endfor %}")
case("template-nested-loops.jinja", "chat-template", ["template"], "nested range(100000) loops")
write("template-huge-output.jinja",
      "{% for a in range(100000) %}{{ 'x' * 100000000 }}{% endfor %}")
case("template-huge-output.jinja", "chat-template", ["template", "MiB"], "writes 10 TB within its fuel")
write("template-huge-string.jinja", "{{ 'x' * 6500000000 }}")
case("template-huge-string.jinja", "chat-template", ["template", "too large"], "one 6.5 GB string")

# Training configs with hyperparameters that once trained on to NaN losses and NaN checkpoints.
def train_toml(train_extra):
    return ("[model]\nn_layer = 1\nn_head = 1\nn_embd = 8\nblock_size = 8\n"
            "[data]\nfiles = [\"input.txt\"]\ntokenizer = \"char\"\n"
            "[train]\nout_dir = \"out\"\nbatch_size = 2\nmax_steps = 3\n" + train_extra)


for name, extra, field, shown in [
    ("lr-negative", "learning_rate = -1.0\n", "train.learning_rate", "-1"),
    ("lr-nan", "learning_rate = nan\n", "train.learning_rate", "NaN"),
    ("lr-inf", "learning_rate = inf\n", "train.learning_rate", "inf"),
    ("beta2-above-one", "learning_rate = 1e-3\nbeta2 = 1.5\n", "train.beta2", "1.5"),
    ("beta1-nan", "learning_rate = 1e-3\nbeta1 = nan\n", "train.beta1", "NaN"),
    ("min-lr-above-lr", "learning_rate = 1e-3\nmin_lr = 1.0\n", "train.min_lr", "1"),
    ("weight-decay-negative", "learning_rate = 1e-3\nweight_decay = -0.1\n", "train.weight_decay", "-0.1"),
    ("grad-clip-nan", "learning_rate = 1e-3\ngrad_clip = nan\n", "train.grad_clip", "NaN"),
    ("eps-unknown", "learning_rate = 1e-3\neps = nan\n", "eps", "train.toml"),
    ("no-steps", "learning_rate = 1e-3\nmax_steps = 0\n", "train.max_steps", "train.toml"),
]:
    text = train_toml(extra)
    if "max_steps = 0" in extra:
        text = text.replace("max_steps = 3\n", "")
    write(f"train-{name}/train.toml", text)
    case(f"train-{name}/train.toml", "train.toml", [field, shown], f"{name}: {extra.strip()}")

# Model tables gpt train cannot build: an unknown block, and key/value heads that do not divide
# the query heads.
for name, model_extra, field, shown in [
    ("arch-unknown", "arch = \"mamba\"\n", "model.arch", "mamba"),
    ("kv-heads", "arch = \"llama\"\nn_head = 1\nn_kv_head = 3\n", "model.n_kv_head", "divide"),
]:
    text = train_toml("learning_rate = 1e-3\n").replace("[model]\n", "[model]\n" + model_extra)
    if "n_head = 1\n" in model_extra:
        text = text.replace("n_head = 1\nn_embd", "n_embd", 1)
    write(f"train-{name}/train.toml", text)
    case(f"train-{name}/train.toml", "train.toml", [field, shown], f"{name}: {model_extra.strip()}")

# Training from a model (model.init / --init): the shape and the tokenizer are the model's.
write("train-init-with-shape/train.toml", train_toml("learning_rate = 1e-3\n").replace(
    "[model]\n", "[model]\ninit = \"model.gguf\"\n"))
case("train-init-with-shape/train.toml", "train.toml", ["model.n_layer", "leave it out"],
     "init-with-shape: init and n_layer both given")
write("train-init-with-tokenizer/train.toml", train_toml("learning_rate = 1e-3\n").replace(
    "n_layer = 1\nn_head = 1\nn_embd = 8\n", "init = \"model.gguf\"\n"))
case("train-init-with-tokenizer/train.toml", "train.toml", ["data.tokenizer", "leave it out"],
     "init-with-tokenizer: init and a tokenizer both given")

(out / "cases.json").write_text(json.dumps({
    "about": "Made by scripts/make_hostile_files.py; run by crates/gpt/tests/hostile_files.rs. "
             "load: tokenizer.json | gpt2-files (a folder with encoder.json + vocab.bpe) | config.json | "
             "train.toml (a gpt train config) | gguf-model (GgufFile::open, then the model) | "
             "gguf-forward (gguf-model, then one forward pass of 3 tokens) | chat-template (render a "
             "short conversation); "
             "error: substrings the one-line error must contain.",
    "cases": cases}, indent=1) + "\n")
print(f"{len(cases)} cases in {out}")
