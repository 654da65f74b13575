"""Single-thread encode throughput of gpt-rs, tiktoken and Hugging Face tokenizers on GPT-2's
vocabulary (run by tokenizer.sh). Each engine encodes the whole file in one call, 3 times; the
median is reported. Loading is not timed."""

import argparse
import json
import statistics
import subprocess
import sys
import time

import tiktoken
from tokenizers import Tokenizer, models, pre_tokenizers, decoders

# GPT-2's split pattern as tiktoken writes it (tiktoken_ext/openai_public.py).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
REPEAT = 3


def byte_decoder():
    """GPT-2's byte-to-unicode alphabet, reversed (encoder.py's bytes_to_unicode)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def tiktoken_gpt2(vocab_dir):
    encoder = json.load(open(f"{vocab_dir}/encoder.json", encoding="utf-8"))
    dec = byte_decoder()
    ranks = {bytes(dec[c] for c in tok): i for tok, i in encoder.items() if tok != "<|endoftext|>"}
    return tiktoken.Encoding(
        name="gpt2-offline",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": encoder["<|endoftext|>"]},
    )


def hf_gpt2(vocab_dir):
    tok = Tokenizer(models.BPE.from_file(f"{vocab_dir}/encoder.json", f"{vocab_dir}/vocab.bpe"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def median_time(f):
    times, n = [], 0
    for _ in range(REPEAT):
        t = time.perf_counter()
        n = f()
        times.append(time.perf_counter() - t)
    return statistics.median(times), n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpt", required=True)
    ap.add_argument("--vocab", required=True)
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()

    tt = tiktoken_gpt2(a.vocab)
    hf = hf_gpt2(a.vocab)
    rows, ok = [], True
    for path in a.files:
        text = open(path, encoding="utf-8").read()
        mb = len(text.encode("utf-8")) / 1e6
        out = subprocess.run(
            [a.gpt, "tokenizer", "bench", "--tokenizer", a.vocab, path, "--repeat", str(REPEAT), "--json"],
            check=True, capture_output=True, text=True,
        )
        ours = json.loads(out.stdout)
        ours_mbs, ours_n = ours["mb_per_s"], ours["tokens"]
        tt_s, tt_n = median_time(lambda: len(tt.encode_ordinary(text)))
        hf_s, hf_n = median_time(lambda: len(hf.encode(text).ids))
        if not ours_n == tt_n == hf_n:
            ok = False
            print(f"TOKEN COUNTS DIFFER on {path}: gpt-rs {ours_n}, tiktoken {tt_n}, tokenizers {hf_n}", file=sys.stderr)
        parts = path.rstrip("/").split("/")
        name = parts[-2] if parts[-1] == "input.txt" else parts[-1]  # the fixture's folder
        rows.append((name, mb, ours_n, ours_mbs, mb / tt_s, mb / hf_s))

    print(f"{'text':<26} {'MB':>6} {'tokens':>10} {'gpt-rs MB/s':>12} {'tiktoken MB/s':>14} {'HF tokenizers MB/s':>19} {'gpt-rs/tiktoken':>16}")
    for name, mb, n, o, t, h in rows:
        print(f"{name:<26} {mb:6.2f} {n:>10} {o:12.1f} {t:14.1f} {h:19.1f} {o / t:15.2f}x")
    print("token counts: " + ("all three agree" if ok else "DIFFER"))
    print(f"versions: tiktoken {tiktoken.__version__ if hasattr(tiktoken, '__version__') else '?'}, "
          f"tokenizers {__import__('tokenizers').__version__}; single thread, median of {REPEAT}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
