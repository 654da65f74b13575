"""Writes a random-weight Llama GGUF (F16) wide enough for every K-quant to keep its own type.

SmolLM2's 576 columns are not a multiple of 256, so llama-quantize gives its K-quant files Q4_0/Q5_0
fallbacks and the K-quant kernels go unmeasured on it. This model has SmolLM2's tokenizer (copied from
its GGUF, so both engines read the same vocabulary) and 1024-wide rows; its weights are noise: it is for
speed, never for text. bench/synthetic_llama.sh runs it and llama-quantize; never in CI.

Usage: python synthetic_llama.py SMOLLM2.gguf OUT.gguf [--hidden 1024] [--layers 16] [--ffn 4096]
       [--heads 16] [--kv-heads 4]
"""

import argparse

import gguf
import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tokenizer_gguf")
    p.add_argument("out")
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--ffn", type=int, default=4096)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--kv-heads", type=int, default=4)
    a = p.parse_args()
    assert a.hidden % 256 == 0 and a.ffn % 256 == 0, "K-quants need rows of a multiple of 256"
    assert a.hidden % a.heads == 0 and a.heads % a.kv_heads == 0

    src = gguf.GGUFReader(a.tokenizer_gguf)
    w = gguf.GGUFWriter(a.out, "llama")
    for f in src.fields.values():
        # The writer adds the architecture and GGUF.* itself; the shape fields are ours.
        if f.name.startswith(("GGUF.", "llama.")) or f.name in ("general.architecture", "general.file_type", "general.name"):
            continue
        vtype = f.types[0]
        sub = f.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(f.name, f.contents(), vtype, sub_type=sub)
    vocab = len(src.fields["tokenizer.ggml.tokens"].data)
    head_dim = a.hidden // a.heads
    w.add_name(f"synthetic-llama-{a.hidden}x{a.layers}")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_block_count(a.layers)
    w.add_context_length(8192)
    w.add_embedding_length(a.hidden)
    w.add_feed_forward_length(a.ffn)
    w.add_head_count(a.heads)
    w.add_head_count_kv(a.kv_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(100000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)

    rng = np.random.default_rng(0)

    def matrix(rows: int, cols: int) -> np.ndarray:
        # numpy's shape is (rows, cols): GGUF's ne is (cols, rows). A 1/sqrt(cols) scale keeps the
        # residual stream finite through the layers.
        return (rng.standard_normal((rows, cols), dtype=np.float32) / np.sqrt(cols)).astype(np.float16)

    ones = np.ones(a.hidden, dtype=np.float32)
    kv = a.kv_heads * head_dim
    w.add_tensor("token_embd.weight", matrix(vocab, a.hidden))
    w.add_tensor("output_norm.weight", ones)
    for i in range(a.layers):
        b = f"blk.{i}."
        w.add_tensor(b + "attn_norm.weight", ones)
        w.add_tensor(b + "attn_q.weight", matrix(a.hidden, a.hidden))
        w.add_tensor(b + "attn_k.weight", matrix(kv, a.hidden))
        w.add_tensor(b + "attn_v.weight", matrix(kv, a.hidden))
        w.add_tensor(b + "attn_output.weight", matrix(a.hidden, a.hidden))
        w.add_tensor(b + "ffn_norm.weight", ones)
        w.add_tensor(b + "ffn_gate.weight", matrix(a.ffn, a.hidden))
        w.add_tensor(b + "ffn_up.weight", matrix(a.ffn, a.hidden))
        w.add_tensor(b + "ffn_down.weight", matrix(a.hidden, a.ffn))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
