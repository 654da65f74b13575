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

(out / "cases.json").write_text(json.dumps({
    "about": "Made by scripts/make_hostile_files.py; run by crates/gpt/tests/hostile_files.rs. "
             "load: tokenizer.json | gpt2-files (a folder with encoder.json + vocab.bpe) | config.json; "
             "error: substrings the one-line error must contain.",
    "cases": cases}, indent=1) + "\n")
print(f"{len(cases)} cases in {out}")
