#!/usr/bin/env bash
# `gpt export` read back by the `gguf` Python package (llama.cpp's own reader, from PyPI). CI runs
# it after the release build; bench/export_llama_cpp.sh runs the exports in llama.cpp itself.
#
# Trains two tiny GPT-2s for a few steps with `gpt train` (a character-level vocabulary, and a
# 512-token byte-level BPE) and a tiny Llama (grouped-query attention, characters), exports each
# checkpoint as F16 and F32, and checks with gguf-py:
# every tensor of the checkpoint's model.safetensors is in the file under llama.cpp's name, with
# the same values (Conv1D weights transposed, Llama's Q and K rows permuted as llama.cpp's
# converter does, F16 rounded as numpy rounds), nothing else is; the keys llama.cpp's gpt2 or
# llama loader reads hold the config's values; the GPT-2s' vocabulary, merges and special ids
# are the tokenizer.json's.
#
# Usage: scripts/export_check.sh   (prints "N passed, M failed"; exit 1 on a failure)
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$root"
venv="$target/venv-gguf"
work="$target/export-check"
gpt_binary
python_venv "$venv" "gguf, safetensors, numpy" gguf safetensors numpy
rm -rf "$work" && mkdir -p "$work"
for case in char:char bpe:bpe:512 llama:char; do
  name=${case%%:*} tok=${case#*:}
  model=""
  [ "$name" = llama ] && model=$'arch = "llama"\nn_kv_head = 1\nd_ff = 96\n'
  cat > "$work/$name.toml" <<TOML
[model]
$model
n_layer = 2
n_head = 2
n_embd = 64
block_size = 32
[data]
files = ["$root/crates/gpt/tests/fixtures/tinyshakespeare/input.txt"]
tokenizer = "$tok"
val_fraction = 0.1
[train]
out_dir = "$work/$name"
batch_size = 4
max_steps = 10
learning_rate = 1e-3
eval_every = 10
eval_batches = 2
sample_every = 100000
checkpoint_every = 10
seed = 7
TOML
  "$gpt" train "$work/$name.toml" >"$work/$name.log" 2>&1 || { cat "$work/$name.log"; exit 1; }
  for ty in F16 F32; do
    "$gpt" export "$work/$name/latest" "$work/$name-$ty.gguf" --type "$ty" >>"$work/$name.log" 2>&1 ||
      { cat "$work/$name.log"; exit 1; }
  done
done
"$venv/bin/python" - "$work" <<'PY'
import json, sys
import numpy as np
from gguf import GGUFReader
from safetensors.numpy import load_file

work = sys.argv[1]
passed = failed = 0

def check(name, ok, detail=""):
    global passed, failed
    passed, failed = passed + ok, failed + (not ok)
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f" ({detail})"))

# llama.cpp's names for Hugging Face's GPT-2 tensors (its tensor_mapping.py), Conv1D ones transposed.
def gguf_name(hf):
    n = hf.removeprefix("transformer.")
    top = {"wte.weight": "token_embd.weight", "wpe.weight": "position_embd.weight",
           "ln_f.weight": "output_norm.weight", "ln_f.bias": "output_norm.bias"}
    if n in top:
        return top[n], False
    _, l, rest = n.split(".", 2)
    part, suffix = rest.rsplit(".", 1)
    role = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output",
            "ln_2": "ffn_norm", "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}[part]
    return f"blk.{l}.{role}.{suffix}", suffix == "weight"

# ... and for Llama's: Q and K rows permuted as convert_hf_to_gguf.py's LlamaModel.permute does
# (llama.cpp rotates adjacent pairs, Hugging Face the two halves of each head).
def llama_name(hf):
    top = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
           "lm_head.weight": "output.weight"}
    if hf in top:
        return top[hf], None
    _, _, l, rest = hf.split(".", 3)
    part = rest.rsplit(".", 1)[0]
    role = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
            "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
            "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
            "post_attention_layernorm": "ffn_norm"}[part]
    return f"blk.{l}.{role}.weight", {"attn_q": "q", "attn_k": "k"}.get(role)

def permute(w, n_head):
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

def value(r, key):
    f = r.fields[key]
    return f.contents()

for name in ["char", "bpe", "llama"]:
    ckpt = f"{work}/{name}/latest"
    weights = load_file(f"{ckpt}/model.safetensors")
    config = json.load(open(f"{ckpt}/config.json"))
    tok = json.load(open(f"{ckpt}/tokenizer.json"))
    for ty in ["F16", "F32"]:
        label = f"{name}-{ty}"
        r = GGUFReader(f"{work}/{label}.gguf")
        tensors = {t.name: t for t in r.tensors}
        expect = {}
        for hf, w in weights.items():
            if name == "llama":
                g, qk = llama_name(hf)
                if qk:
                    w = permute(w, config["num_attention_heads"] if qk == "q" else config["num_key_value_heads"])
            else:
                g, transpose = gguf_name(hf)
                w = w.T if transpose else w
            expect[g] = w.astype(np.float16 if (ty == "F16" and w.ndim >= 2) else np.float32)
        check(f"{label}: the checkpoint's tensors, no others", set(tensors) == set(expect),
              sorted(set(tensors) ^ set(expect)))
        bad = [g for g, w in expect.items() if g in tensors and not (
            tensors[g].tensor_type.name == ("F16" if w.dtype == np.float16 else "F32")
            and np.array_equal(np.asarray(tensors[g].data).reshape(w.shape), w))]
        check(f"{label}: every tensor's type and values", not bad, bad)
        if name == "llama":
            keys = {"general.architecture": "llama", "llama.block_count": config["num_hidden_layers"],
                    "llama.context_length": config["max_position_embeddings"],
                    "llama.embedding_length": config["hidden_size"],
                    "llama.feed_forward_length": config["intermediate_size"],
                    "llama.attention.head_count": config["num_attention_heads"],
                    "llama.attention.head_count_kv": config["num_key_value_heads"],
                    "general.file_type": {"F16": 1, "F32": 0}[ty]}
            wrong = {k: (value(r, k) if k in r.fields else None, v) for k, v in keys.items()
                     if k not in r.fields or value(r, k) != v}
            close = [k for k, v in [("llama.rope.freq_base", config["rope_theta"]),
                                    ("llama.attention.layer_norm_rms_epsilon", config["rms_norm_eps"])]
                     if k not in r.fields or abs(value(r, k) - v) > 1e-6 * v]
            check(f"{label}: llama.cpp's llama keys", not wrong and not close, (wrong, close))
            continue
        keys = {"general.architecture": "gpt2", "gpt2.block_count": config["n_layer"],
                "gpt2.context_length": config["n_positions"], "gpt2.embedding_length": config["n_embd"],
                "gpt2.feed_forward_length": config["n_inner"], "gpt2.attention.head_count": config["n_head"],
                "general.file_type": {"F16": 1, "F32": 0}[ty], "tokenizer.ggml.model": "gpt2",
                "tokenizer.ggml.pre": "gpt-2"}
        wrong = {k: (value(r, k) if k in r.fields else None, v) for k, v in keys.items()
                 if k not in r.fields or value(r, k) != v}
        eps = value(r, "gpt2.attention.layer_norm_epsilon")
        check(f"{label}: llama.cpp's gpt2 keys", not wrong and abs(eps - config["layer_norm_epsilon"]) < 1e-12, wrong)
        vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
        tokens = [t for t, _ in vocab] + [a["content"] for a in sorted(tok["added_tokens"], key=lambda a: a["id"])
                                          if a["id"] >= len(vocab)]
        merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
        got_merges = value(r, "tokenizer.ggml.merges")
        check(f"{label}: vocabulary and merges", value(r, "tokenizer.ggml.tokens") == tokens
              and list(got_merges) == merges, (len(tokens), len(merges)))
        specials = [a for a in tok["added_tokens"] if a.get("special")]
        if specials:
            eos = value(r, "tokenizer.ggml.eos_token_id")
            types = value(r, "tokenizer.ggml.token_type")
            check(f"{label}: <|endoftext|> is the EOS id and a control token",
                  tokens[eos] == "<|endoftext|>" and types[eos] == 3, (eos, types[eos]))
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
