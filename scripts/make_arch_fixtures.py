#!/usr/bin/env python3
"""Tiny random models of every architecture gpt-rs runs, as HF folders and GGUF files, with
transformers' logits. Run through scripts/make_arch_fixtures.sh (which sets up the venv and builds
llama-quantize); never in CI.

    python make_arch_fixtures.py --llama-cpp SRC --quantize BIN [--out DIR] [ARCH...]

For each architecture this writes DIR/<arch>/{hf/, reference.json, model-*.gguf, README.md}.
See crates/gpt/tests/fixtures/arch/README.md for what the files hold.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "crates/gpt/tests/fixtures/tinyshakespeare/input.txt"

VOCAB = 320          # every fixture's vocab_size (= its tokenizer's size)
# K-quants need rows (a matrix's input width) that are multiples of 256: llama is that wide, so its
# Q4_K_M and Q6_K files hold real Q4_K / Q6_K blocks on every matrix. The others are 64 wide to keep
# the fixtures small (a few MB in all); in their K-quant files llama-quantize falls back to Q5_0 /
# Q8_0 row by row, as it does for the 576- and 640-wide rows of the real SmolLM2 and Gemma 3 (those
# real files, and tests/quant.rs, cover the K-quant kernels).
WIDE = dict(hidden=256, inter=256, heads=4, head_dim=64)    # heads * head_dim = o_proj's input width
NARROW = dict(hidden=64, inter=128, heads=4, head_dim=16)
WEIGHT_STD = 0.05
BIAS_STD = 0.2
CASE_LENGTHS = (8, 23, 40)   # 40 > every sliding window (16) below
SLIDING_WINDOW = 16
DIGITS = 7           # significant digits kept of every logit

# llama.cpp's RoPE for each arch (llama_model_rope_type in src/llama-model.cpp).
ROPE = {"llama": "NORM", "llama31": "NORM", "mistral": "NORM", "qwen2": "NEOX", "qwen3": "NEOX", "phi3": "NEOX", "gemma3": "NEOX"}

ARCHS = {
    # name: (HF class, tokenizer kind, tied embeddings, layers, seed)
    "llama": ("LlamaForCausalLM", "bpe-llama", True, 1, 1001),
    # llama with Llama 3.1 RoPE scaling (rope_type llama3); tied like llama
    "llama31": ("LlamaForCausalLM", "bpe-llama", True, 1, 1007),
    "qwen2": ("Qwen2ForCausalLM", "bpe-qwen", True, 1, 1002),
    "qwen3": ("Qwen3ForCausalLM", "bpe-qwen", False, 1, 1003),
    "mistral": ("MistralForCausalLM", "spm-llama", False, 1, 1004),
    "phi3": ("Phi3ForCausalLM", "spm-phi3", False, 1, 1005),
    "gemma3": ("Gemma3ForCausalLM", "spm-gemma", True, 2, 1006),
}
# Which float GGUF types each arch gets beside f16 (one f32 file keeps the F32 tensor path tested).
EXTRA_FLOAT = {"llama31": ["f32"]}


def dims(arch: str) -> dict:
    return WIDE if arch == "llama" else NARROW


def config_for(arch: str, layers: int, tied: bool, tok: dict):
    import transformers as T
    d = dims(arch)
    common = dict(vocab_size=VOCAB, hidden_size=d["hidden"], intermediate_size=d["inter"], num_hidden_layers=layers,
                  num_attention_heads=d["heads"], head_dim=d["head_dim"], max_position_embeddings=128,
                  tie_word_embeddings=tied, bos_token_id=tok["bos"], eos_token_id=tok["eos"],
                  pad_token_id=tok.get("pad"))
    if arch == "llama":
        return T.LlamaConfig(**common, num_key_value_heads=2, rms_norm_eps=1e-5, hidden_act="silu",
                             rope_parameters={"rope_type": "default", "rope_theta": 500000.0})
    if arch == "qwen2":
        return T.Qwen2Config(**common, num_key_value_heads=2, rms_norm_eps=1e-6, hidden_act="silu",
                             use_sliding_window=False, sliding_window=None,
                             rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    if arch == "qwen3":
        return T.Qwen3Config(**common, num_key_value_heads=2, rms_norm_eps=1e-6, hidden_act="silu",
                             attention_bias=False, use_sliding_window=False, sliding_window=None,
                             rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    if arch == "mistral":
        return T.MistralConfig(**common, num_key_value_heads=2, rms_norm_eps=1e-5, hidden_act="silu",
                               sliding_window=SLIDING_WINDOW,
                               rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    if arch == "phi3":
        common.pop("head_dim")  # Phi3 derives it: hidden_size / num_attention_heads
        return T.Phi3Config(**common, num_key_value_heads=2, rms_norm_eps=1e-5, hidden_act="silu",
                            sliding_window=None, original_max_position_embeddings=128,
                            rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                             "partial_rotary_factor": 1.0})
    if arch == "gemma3":
        # One sliding and one global layer. llama.cpp reads Gemma 3's pattern from
        # gemma3.attention.sliding_window_pattern, else assumes 6 (layers il % 6 < 5 slide); the
        # converter writes no pattern, so the fixture script adds the array (see README).
        cfg = T.Gemma3TextConfig(**common, num_key_value_heads=1, rms_norm_eps=1e-6,
                                 hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=d["head_dim"],
                                 sliding_window=SLIDING_WINDOW,
                                 layer_types=["sliding_attention", "full_attention"][:layers],
                                 final_logit_softcapping=None, attn_logit_softcapping=None,
                                 rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                                                  "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}})
        cfg._sliding_window_pattern = 2
        return cfg
    if arch == "llama31":
        # Llama 3.1's rope_scaling with original_max_position_embeddings 16 (real: 8192): with head_dim
        # 16 and base 5e5 every pair's wavelength (2π · 5e5^(i/8) ≥ 2π) exceeds 16 / 4, so none is
        # kept; pair 0 (2π) is smoothed and the other 7 divided by 8 (see the README).
        return T.LlamaConfig(**common, num_key_value_heads=2, rms_norm_eps=1e-5, hidden_act="silu",
                             rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, **LLAMA31_ROPE))
    raise ValueError(arch)


LLAMA31_ROPE = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16}


def llama31_rope_report(model, gguf_path: Path) -> list:
    """README lines on llama31's RoPE: transformers' inv_freq (_compute_llama3_parameters) against
    the unscaled one, and the GGUF's rope_freqs.weight (llama.cpp divides each pair's frequency by it)."""
    import numpy as np
    import torch
    from gguf import GGUFReader
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    cfg = model.config
    inv, att = ROPE_INIT_FUNCTIONS["llama3"](cfg, torch.device("cpu"))
    inv = inv.to(torch.float64).numpy()
    theta = cfg.rope_parameters["rope_theta"]
    hd = cfg.head_dim
    plain32 = (1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).to(torch.float32) / hd))).double().numpy()
    ratio = plain32 / inv
    kept = int(np.sum(np.isclose(ratio, 1.0, rtol=1e-6)))
    full = int(np.sum(np.isclose(ratio, LLAMA31_ROPE["factor"], rtol=1e-6)))
    n = len(inv)
    r = GGUFReader(gguf_path)
    t = next((t for t in r.tensors if t.name == "rope_freqs.weight"), None)
    assert t is not None, "no rope_freqs.weight"
    assert t.tensor_type.name == "F32" and [int(x) for x in t.shape] == [n], (t.tensor_type.name, t.shape)
    ff = np.asarray(t.data, dtype=np.float64)
    dev = float(np.max(np.abs(ff - ratio) / ratio))
    assert dev < 1e-5, dev
    # what the same weights give with unscaled RoPE: how far a loader that ignores the scaling misses
    import transformers as T
    plain_model = T.LlamaForCausalLM.from_pretrained(
        gguf_path.parent / "hf", dtype=torch.float32, attn_implementation="eager",
        rope_parameters={"rope_type": "default", "rope_theta": theta}).eval()
    assert plain_model.config.rope_parameters["rope_type"] == "default"
    ref = json.loads((gguf_path.parent / "reference.json").read_text())
    miss = " / ".join(f"{c['name']} {max_diff(logits_of(plain_model, c['input_ids']), c['logits']):.2e}" for c in ref["cases"])
    wl = 2 * np.pi / plain32
    smooth = [i for i in range(n) if not np.isclose(ratio[i], 1.0, rtol=1e-6) and not np.isclose(ratio[i], LLAMA31_ROPE["factor"], rtol=1e-6)]
    print(f"  llama31 RoPE: {n - kept}/{n} pairs scaled ({full} by {LLAMA31_ROPE['factor']}, {n - kept - full} smoothed {smooth}); "
          f"rope_freqs max rel dev from HF {dev:.1e}; attention_factor {att}; unscaled RoPE misses reference by {miss}", flush=True)
    return ["", "## RoPE scaling (Llama 3.1 style)", "",
            f"`rope_parameters` = rope_type llama3, rope_theta {theta:g}, " + ", ".join(f"{k} {v:g}" for k, v in LLAMA31_ROPE.items())
            + f" (older transformers write these as `rope_scaling` plus top-level `rope_theta`). Wavelengths 2π/θ_i "
            f"below {LLAMA31_ROPE['original_max_position_embeddings'] / LLAMA31_ROPE['high_freq_factor']:g} keep θ_i, "
            f"above {LLAMA31_ROPE['original_max_position_embeddings'] / LLAMA31_ROPE['low_freq_factor']:g} get θ_i / {LLAMA31_ROPE['factor']:g}, "
            "in between θ_i · ((1 − s) / factor + s) with s = (orig_ctx / wavelen − low_freq_factor) / (high_freq_factor − low_freq_factor).", "",
            f"- transformers' `_compute_llama3_parameters` inv_freq differs from the unscaled one in **{n - kept} of {n}** pairs: "
            f"{kept} kept, {n - kept - full} smoothed (pairs {smooth[0]}–{smooth[-1]}, wavelengths {wl[smooth[0]]:.2f}–{wl[smooth[-1]]:.2f}), "
            f"{full} divided by {LLAMA31_ROPE['factor']:g} (wavelength ≥ {wl[smooth[-1] + 1]:.2f}); attention_factor {att}. "
            f"Pair 0's wavelength is 2π > {LLAMA31_ROPE['original_max_position_embeddings'] / LLAMA31_ROPE['high_freq_factor']:g}, "
            "so the kept band is empty with these parameters.",
            f"- the same weights with unscaled RoPE (rope_type default) miss `logits` by {miss} (max |Δ|): "
            "what a loader that ignores the scaling would see.",
            f"- `model-f16.gguf` (and the quantized files) hold `rope_freqs.weight`, F32, [{n}]: the divisor per pair "
            f"(llama.cpp's freq_factors), written by the converter's `LlamaModel.generate_extra_tensors`; it matches "
            f"unscaled / HF inv_freq to a relative {dev:.1e}. No `llama.rope.scaling.*` key is written for llama3.",
            "- rope_freqs.weight = [" + ", ".join(f"{x:.6g}" for x in ff) + "]"]


# ---------------------------------------------------------------- tokenizers

def corpus_text(work: Path) -> Path:
    p = work / "corpus.txt"
    p.write_text(CORPUS.read_text(encoding="utf-8")[:200_000], encoding="utf-8")
    return p


def make_tokenizer(kind: str, work: Path, out: Path) -> dict:
    """Trains a tokenizer of exactly VOCAB entries into `out` and returns its special ids."""
    import sentencepiece as spm
    from transformers import GemmaTokenizer, LlamaTokenizer, PreTrainedTokenizerFast
    corpus = corpus_text(work)
    if kind.startswith("spm"):
        gemma = kind == "spm-gemma"
        from sentencepiece import sentencepiece_model_pb2

        def scrub_spm_paths(path):
            # SentencePiece stores its trainer's arguments, absolute paths included: keep names only.
            m = sentencepiece_model_pb2.ModelProto()
            m.ParseFromString(path.read_bytes())
            del m.trainer_spec.input[:]
            m.trainer_spec.input.append("tinyshakespeare.txt")
            m.trainer_spec.model_prefix = "tokenizer"
            path.write_bytes(m.SerializeToString())
        ids = dict(pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
                   bos_piece="<bos>", unk_piece="<unk>",
                   user_defined_symbols=["<mask>"]) if gemma else dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
        if kind == "spm-phi3":
            # llama.cpp looks <|endoftext|> up in every vocabulary of a model whose name says phi3
            ids["user_defined_symbols"] = ["<|endoftext|>"]
        prefix = work / f"sp-{kind}"
        spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(prefix), vocab_size=VOCAB,
                                       model_type="bpe", character_coverage=1.0, byte_fallback=False,
                                       num_threads=1, minloglevel=2, normalization_rule_name="identity",
                                       **ids)
        src = work / f"tok-{kind}"
        src.mkdir(exist_ok=True)
        shutil.copy(f"{prefix}.model", src / "tokenizer.model")
        scrub_spm_paths(src / "tokenizer.model")
        tok = (GemmaTokenizer if gemma else LlamaTokenizer).from_pretrained(src)
        tok.save_pretrained(out)
        shutil.copy(src / "tokenizer.model", out / "tokenizer.model")
        # transformers records where it read the vocabulary from: a path of this machine.
        cfg = out / "tokenizer_config.json"
        cfg_json = json.loads(cfg.read_text())
        if cfg_json.pop("vocab_file", None) is not None:
            cfg.write_text(json.dumps(cfg_json, indent=2, ensure_ascii=False) + "\n")
        assert len(tok) == VOCAB, (kind, len(tok))
        return {"bos": tok.bos_token_id, "eos": tok.eos_token_id, "pad": tok.pad_token_id, "unk": tok.unk_token_id}

    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    if kind == "bpe-llama":
        pattern = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
        specials = ["<|begin_of_text|>", "<|end_of_text|>"]
        bos, eos = specials
    else:
        pattern = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        bos, eos = None, "<|endoftext|>"
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    t.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - len(specials), special_tokens=[], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    t.train([str(corpus)], trainer)
    t.add_special_tokens(specials)
    extra = dict(bos_token=bos) if bos else {}
    tok = PreTrainedTokenizerFast(tokenizer_object=t, eos_token=eos, **extra)
    tok.save_pretrained(out)
    assert len(tok) == VOCAB, (kind, len(tok))
    return {"bos": tok.bos_token_id, "eos": tok.eos_token_id, "pad": None}


# ---------------------------------------------------------------- weights and logits

def randomize(model, arch: str, seed: int):
    """Seeded random weights, every one float16-representable (so f16 and f32 files hold the same
    numbers). Norm weights are non-trivial: Gemma's (1 + w) convention gets w in [-0.5, 0.5], the
    others w in [0.5, 1.5].

    Gemma 3: llama.cpp's converter writes 1 + w, computing it in the HF tensor's dtype (float16), so
    the GGUF would hold round_f16(1 + w) unless 1 + w is itself a float16 number. Its norm weights
    are therefore w = k / 1024 with integer k in [-512, 512]: w is exact in float16, and so is
    1 + w in [0.5, 1.5] (float16 spacing is 2^-11 in [0.5, 1), 2^-10 in [1, 2)). Same random draws
    as before, snapped to that grid, so every other weight is unchanged."""
    import numpy as np
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "norm" in name:
                u = torch.rand(p.shape, generator=g) - 0.5
                if arch == "gemma3":
                    v = torch.round(u.to(torch.float64) * 1024) / 1024
                    w = v.numpy()
                    assert np.all(np.abs(w) <= 0.5), name
                    assert np.all(w.astype(np.float16).astype(np.float64) == w), name
                    assert np.all((1 + w).astype(np.float16).astype(np.float64) == 1 + w), name
                    v = v.to(torch.float32)
                else:
                    v = 1.0 + u
            elif name.endswith(".bias"):
                v = torch.randn(p.shape, generator=g) * BIAS_STD
            else:
                v = torch.randn(p.shape, generator=g) * WEIGHT_STD
            p.copy_(v.to(torch.float16).to(torch.float32))


def compact(x: float) -> float:
    return float(f"{x:.{DIGITS}g}")


def logits_of(model, ids):
    import torch
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], dtype=torch.long))
    return [[compact(v) for v in row] for row in out.logits[0].to(torch.float32).tolist()]


def cases_for(arch_seed: int):
    import random
    r = random.Random(arch_seed)
    return [{"name": f"len{n}", "input_ids": [r.randrange(VOCAB) for _ in range(n)]} for n in CASE_LENGTHS]


def write_reference(path: Path, doc: dict):
    # One logits row per line: readable diffs, compact enough.
    text = json.dumps(doc, indent=1)
    import re
    def rows(m):
        return m.group(0).replace("\n", "").replace(" ", "")
    text = re.sub(r"\[\s*-?[0-9][^\[\]]*\]", rows, text)
    path.write_text(text + "\n", encoding="utf-8")


LOADED = {}   # arch -> the transformers model reference.json came from


def build_hf(arch: str, out: Path, work: Path) -> dict:
    import torch
    import transformers as T
    cls_name, tok_kind, tied, layers, seed = ARCHS[arch]
    hf = out / "hf"
    if hf.exists():
        shutil.rmtree(hf)
    hf.mkdir(parents=True)
    tok = make_tokenizer(tok_kind, work, hf)
    cfg = config_for(arch, layers, tied, tok)
    torch.manual_seed(seed)
    model = getattr(T, cls_name)(cfg).to(torch.float32)
    randomize(model, arch, seed)
    model.to(torch.float16).save_pretrained(hf, safe_serialization=True)
    gen = hf / "generation_config.json"
    if gen.exists():
        # transformers writes its version into it; keep it: it says which transformers made the folder
        pass

    ref = getattr(T, cls_name).from_pretrained(hf, dtype=torch.float32, attn_implementation="eager").eval()
    LOADED[arch] = ref
    cases = cases_for(seed)
    for c in cases:
        c["logits"] = logits_of(ref, c["input_ids"])
    notes = {}
    if arch == "mistral":
        # convert_hf_to_gguf.py does not carry Mistral's sliding_window into the GGUF (llama arch),
        # so llama.cpp attends to every position: these are the logits the GGUF files should give.
        full = getattr(T, cls_name).from_pretrained(hf, dtype=torch.float32, attn_implementation="eager",
                                                    sliding_window=None).eval()
        for c in cases:
            c["logits_full_attention"] = logits_of(full, c["input_ids"])
        notes["logits_full_attention"] = ("same model with sliding_window=None (full causal attention): "
                                          "what the GGUF files give, since the converter drops sliding_window")
    doc = {
        "arch": arch,
        "hf_class": cls_name,
        "made_with": {"torch": torch.__version__, "transformers": T.__version__, "python": platform.python_version()},
        "computation": "float32 weights loaded from hf/ (float16 safetensors), attn_implementation=eager, CPU, torch.no_grad()",
        "float_format": f"logits rounded to {DIGITS} significant digits",
        "vocab_size": VOCAB,
        "tie_word_embeddings": tied,
        "config": json.loads((hf / "config.json").read_text()),
        "notes": notes,
        "cases": cases,
    }
    write_reference(out / "reference.json", doc)
    return doc


# ---------------------------------------------------------------- GGUF

def convert(arch: str, out: Path, llama_cpp: Path, outtype: str) -> Path:
    dst = out / f"model-{outtype}.gguf"
    pre = {"bpe-llama": "llama-bpe", "bpe-qwen": "qwen2"}.get(ARCHS[arch][1], "")
    subprocess.run([sys.executable, __file__, "_convert", str(llama_cpp), pre, arch, "--",
                    str(out / "hf"), "--outtype", outtype, "--outfile", str(dst), "--model-name", f"tiny-random-{arch}"], check=True)
    return dst


def _convert_main(argv):
    """Runs llama.cpp's convert_hf_to_gguf.py in this process, with two patches of our own:
    the BPE pre-tokenizer name (our tiny vocabularies have no known hash) and, for Gemma 3, the
    sliding-window pattern array (the converter writes none and llama.cpp would assume 6)."""
    llama_cpp, pre, arch, _, *args = argv
    sys.path.insert(0, llama_cpp)
    sys.path.insert(1, str(Path(llama_cpp) / "gguf-py"))
    import conversion.base as base
    if pre:
        base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
    if arch == "gemma3":
        import conversion.gemma as gemma
        orig = gemma.Gemma3Model.set_gguf_parameters

        def set_gguf_parameters(self):
            orig(self)
            self.gguf_writer.add_sliding_window_pattern(
                [t == "sliding_attention" for t in self.hparams["layer_types"]])
        gemma.Gemma3Model.set_gguf_parameters = set_gguf_parameters
    import convert_hf_to_gguf
    sys.argv = ["convert_hf_to_gguf.py", *args]
    convert_hf_to_gguf.main()


def quantize(quantize_bin: Path, src: Path, qtype: str) -> Path:
    dst = src.parent / f"model-{qtype}.gguf"
    subprocess.run([str(quantize_bin), str(src), str(dst), qtype, "1"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return dst


def gguf_summary(path: Path) -> dict:
    from gguf import GGUFReader
    r = GGUFReader(path)
    types = {}
    tensors = []
    for t in r.tensors:
        tensors.append({"name": t.name, "type": t.tensor_type.name, "shape": [int(x) for x in t.shape]})
        types.setdefault(t.tensor_type.name, []).append(t.name)
    meta = {}
    for k, f in r.fields.items():
        if k.startswith("tokenizer.ggml.") and k in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                                                     "tokenizer.ggml.token_type", "tokenizer.ggml.merges"):
            meta[k] = f"[{len(f.data)} entries]"
            continue
        try:
            v = f.contents()
        except Exception:  # noqa: BLE001
            v = "?"
        if isinstance(v, float):
            v = compact(v)
        meta[k] = v
    return {"file": path.name, "bytes": path.stat().st_size, "types": {k: len(v) for k, v in types.items()},
            "tensors": tensors, "metadata": meta}


# ---------------------------------------------------------------- llama.cpp cross-check

def llama_cpp_logits(lib_dir: Path, py_dir: Path, gguf_path: Path, ids):
    """Logits of every position from llama.cpp itself (through llama-cpp-python's ctypes binding on
    the library we built); returns None when the library is absent."""
    code = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import llama_cpp
ids = json.loads(sys.argv[3])
m = llama_cpp.Llama(model_path=sys.argv[2], n_ctx=64, n_batch=64, n_ubatch=64, logits_all=True, verbose=False,
                    n_threads=1, seed=0, flash_attn=False)
m.eval(ids)
print(json.dumps(m.scores[: len(ids)].tolist()))
"""
    env = dict(os.environ, LLAMA_CPP_LIB_PATH=str(lib_dir))
    p = subprocess.run([sys.executable, "-c", code, str(py_dir), str(gguf_path), json.dumps(ids)],
                       capture_output=True, text=True, env=env)
    if p.returncode != 0:
        print(p.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(p.stdout)


def max_diff(a, b):
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


# ---------------------------------------------------------------- README

def fmt_types(s):
    return ", ".join(f"{k} ×{v}" for k, v in sorted(s["types"].items()))


def tok_note(kind):
    if kind.startswith("spm"):
        return "SentencePiece tokenizer.model + tokenizer.json"
    pre = {"bpe-llama": "llama-bpe", "bpe-qwen": "qwen2"}[kind]
    return f"byte-level BPE tokenizer.json; our conversion patches the converter's pre-tokenizer hash lookup to return '{pre}'"


def write_readme(arch: str, out: Path, doc: dict, summaries: list, checks: dict, extra: list = ()):
    cls_name, tok_kind, tied, layers, seed = ARCHS[arch]
    cfg = doc["config"]
    lines = [f"# {arch}: tiny random {cls_name}", "",
             "Made by `scripts/make_arch_fixtures.sh` (rerun it to remake; never in CI). Random weights "
             f"(seed {seed}, std {WEIGHT_STD}, biases std {BIAS_STD}, norm weights "
             f"{'in [-0.5, 0.5] on the grid k/1024 (HF adds 1; w and 1 + w both exact in float16)' if arch == 'gemma3' else 'uniform [0.5, 1.5]'}), every value float16-representable; "
             "`hf/model.safetensors` holds them in float16, `reference.json` has transformers' float32 eager logits "
             "from that folder.", "",
             f"- layers: {layers}; hidden {cfg['hidden_size']}, intermediate {cfg['intermediate_size']}, heads {cfg['num_attention_heads']} "
             f"(kv {cfg['num_key_value_heads']}), head_dim {cfg['hidden_size'] // cfg['num_attention_heads']}, vocab {VOCAB}",
             f"- tied embeddings: {'yes' if tied else 'no (separate lm_head / output.weight)'}",
             f"- tokenizer: {tok_kind} ({tok_note(tok_kind)}), trained on tinyshakespeare",
             f"- llama.cpp RoPE: {ROPE[arch]}" + (" (the converter permutes Q/K rows for it)" if ROPE[arch] == "NORM" else " (halves; Q/K not permuted)"),
             ]
    if arch == "mistral":
        lines.append(f"- sliding_window {SLIDING_WINDOW} in HF; **not carried into the GGUF** (no `llama.attention.sliding_window` key): "
                     "compare GGUF runs with `logits_full_attention`, HF runs with `logits`.")
    if arch == "gemma3":
        lines.append(f"- layer 0 sliding (window {SLIDING_WINDOW}, rope base 10000), layer 1 global (rope base 1e6); "
                     "the GGUF holds `gemma3.attention.sliding_window_pattern = [true, false]`, added by our fixture script "
                     "(the converter writes only `gemma3.attention.sliding_window`; without the array llama.cpp assumes "
                     "pattern 6: layer il slides iff il % 6 < 5). Norm weights in the GGUF are HF's + 1 (the converter folds it in, adding in float16; "
                     "w is drawn so that 1 + w is exact in float16, hence the GGUF holds exactly 1 + w).")
    if arch == "phi3":
        lines.append("- HF has fused `qkv_proj` and `gate_up_proj`; the GGUF keeps `attn_qkv` fused and keeps `ffn_up` fused "
                     "(gate and up halves, 2×intermediate rows).")
    if arch == "qwen2":
        lines.append("- q/k/v projections have biases (attn_q.bias, attn_k.bias, attn_v.bias).")
    if arch == "qwen3":
        lines.append("- per-head QK RMSNorm (attn_q_norm, attn_k_norm over head_dim).")
    if arch == "llama31":
        lines.append("- the `llama` fixture's shape with Llama 3.1 RoPE scaling (rope_type llama3, see below); "
                     "the GGUF files carry it as the extra tensor `rope_freqs.weight`.")
    lines += list(extra)
    lines += ["", "## Files", "", "| file | bytes | GGML types (tensor count) |", "| --- | --- | --- |"]
    for s in summaries:
        lines.append(f"| {s['file']} | {s['bytes']} | {fmt_types(s)} |")
    if checks:
        lines += ["", "## llama.cpp cross-check", "",
                  "Max |llama.cpp logit − transformers logit| over every position of every case (llama.cpp built by the script; "
                  + ("vs `logits_full_attention`" if arch == "mistral" else "vs `logits`") + "):", ""]
        for k, v in checks.items():
            lines.append(f"- {k}: {v}")
    quants = [s for s in summaries if "Q" in s["file"]]
    for s in quants:
        lines += ["", f"## Tensor types in {s['file']}", ""]
        lines += [f"- {t['name']} {t['shape']}: {t['type']}" for t in s["tensors"]]
    lines += ["", "## GGUF metadata (model-f16.gguf, tokenizer arrays elided)", "", "```"]
    f16 = next(s for s in summaries if s["file"] == "model-f16.gguf")
    for k, v in f16["metadata"].items():
        if k.startswith("GGUF."):
            continue
        lines.append(f"{k} = {json.dumps(v) if not isinstance(v, str) or not v.startswith('[') else v}")
    lines += ["```", "", "## config.json", "", "```json", json.dumps(cfg, indent=1), "```", ""]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_convert":
        return _convert_main(sys.argv[2:])
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-cpp", required=True, type=Path, help="vendored llama.cpp source tree")
    ap.add_argument("--quantize", required=True, type=Path, help="llama-quantize binary")
    ap.add_argument("--lib-dir", type=Path, help="folder of libllama.so, for the llama.cpp cross-check")
    ap.add_argument("--py-binding", type=Path, help="llama-cpp-python's source folder (holds llama_cpp/)")
    ap.add_argument("--out", type=Path, default=ROOT / "crates/gpt/tests/fixtures/arch")
    ap.add_argument("--work", type=Path, default=ROOT / "bench/.venv-fixtures/work")
    ap.add_argument("archs", nargs="*", default=list(ARCHS))
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    for arch in a.archs:
        out = a.out / arch
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        print(f"== {arch}", flush=True)
        doc = build_hf(arch, out, a.work)
        f16 = convert(arch, out, a.llama_cpp, "f16")
        files = [f16]
        files += [convert(arch, out, a.llama_cpp, t) for t in EXTRA_FLOAT.get(arch, [])]
        files += [quantize(a.quantize, f16, "Q4_K_M"), quantize(a.quantize, f16, "Q6_K")]
        summaries = [gguf_summary(f) for f in files]
        checks = {}
        if a.lib_dir and a.py_binding:
            key = "logits_full_attention" if arch == "mistral" else "logits"
            for f in files:
                diffs = []
                for c in doc["cases"]:
                    got = llama_cpp_logits(a.lib_dir, a.py_binding, f, c["input_ids"])
                    if got is None:
                        break
                    diffs.append(max_diff(got, c[key]))
                if diffs:
                    checks[f.name] = " / ".join(f"{c['name']} {d:.2e}" for c, d in zip(doc["cases"], diffs))
                    print(f"  llama.cpp {f.name}: {checks[f.name]}", flush=True)
        extra = llama31_rope_report(LOADED[arch], f16) if arch == "llama31" else []
        write_readme(arch, out, doc, summaries, checks, extra)
        for f in sorted(out.rglob("*")):
            if f.is_file():
                print(f"  {f.relative_to(a.out)} {f.stat().st_size}")


if __name__ == "__main__":
    main()
