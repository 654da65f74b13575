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

(out / "cases.json").write_text(json.dumps({
    "about": "Made by scripts/make_hostile_files.py; run by crates/gpt/tests/hostile_files.rs. "
             "load: tokenizer.json | gpt2-files (a folder with encoder.json + vocab.bpe) | config.json | "
             "train.toml (a gpt train config); "
             "error: substrings the one-line error must contain.",
    "cases": cases}, indent=1) + "\n")
print(f"{len(cases)} cases in {out}")
