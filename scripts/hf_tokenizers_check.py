"""Hugging Face `tokenizers` against `gpt tokenize` on a tokenizer trained by `gpt tokenizer train`.

Run by hf_tokenizers_check.sh with one or more trained folders DIR (the first gets every case,
the others, trained with other split patterns, every fourth held-out case and the hard strings).
Every case must give the same ids from:
  - `gpt tokenize TEXT --tokenizer DIR --json` (gpt-rs, reading DIR/tokenizer.json),
  - Hugging Face `Tokenizer.from_file(DIR/tokenizer.json)`,
  - Hugging Face `ByteLevelBPETokenizer(DIR/encoder.json, DIR/vocab.bpe)` (GPT-2's files; cases
    without special-token text, since these files do not mark special tokens),
and Hugging Face must decode the ids back to the text. Also reports, for information, whether
Hugging Face's own BpeTrainer learns the same merges as the first folder from the training text.
Prints "N passed, M failed"; exits 1 if M > 0.
"""

import argparse
import json
import os
import subprocess
import sys

from tokenizers import Tokenizer, pre_tokenizers, trainers, models
from tokenizers.implementations import ByteLevelBPETokenizer

SPECIAL = "<|endoftext|>"

HARD = [
    "",
    " ",
    "   leading spaces",
    "trailing spaces   ",
    "\n",
    "\n\n\n",
    " \n \n\n  x",
    "\t\ttabs\tand\r\nCRLF\r\n",
    "don't you'll I'M we've they'd it's O'er",
    "12345 6789 0.5 3,000",
    "Déjà vu: naïve café, façade — “quotes” ‘single’ …",
    "😀🍕 emoji 👩‍👩‍👧 family",
    "中文字符 日本語 한국어",
    "ℌ𝔢𝔩𝔩𝔬 𝔴𝔬𝔯𝔩𝔡",
    "\u00a0no-break\u2003em space\u3000ideographic",
    "x" * 3000,
    "ab" * 1500,
    "!!!???...,,,;;;",
    "KING RICHARD III:\nNow is the winter of our discontent",
    SPECIAL,
    f"{SPECIAL}First Citizen:{SPECIAL}\n{SPECIAL}",
    f"a{SPECIAL}b {SPECIAL} c",
]


def held_out_cases(text):
    """Paragraphs, then single lines, of the held-out text: several hundred cases."""
    paragraphs = [p for p in text.split("\n\n") if p]
    lines = [l for l in text.split("\n") if l][:300]
    return paragraphs + [p + "\n\n" for p in paragraphs[:50]] + lines + [text]


def ours(gpt, tokenizer, text):
    out = subprocess.run(
        [gpt, "tokenize", "--tokenizer", tokenizer, "--json", "--", text],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)["ids"]


def check(gpt, tokenizer, cases):
    """(passed, failed) over `cases` for one trained folder."""
    hf = Tokenizer.from_file(f"{tokenizer}/tokenizer.json")
    has_gpt2_files = os.path.exists(f"{tokenizer}/encoder.json")
    if has_gpt2_files:
        hf_gpt2 = ByteLevelBPETokenizer(f"{tokenizer}/encoder.json", f"{tokenizer}/vocab.bpe")
    passed, failed = 0, 0
    for i, text in enumerate(cases):
        want = ours(gpt, tokenizer, text)
        problems = []
        got = hf.encode(text).ids
        if got != want:
            problems.append(f"tokenizer.json ids {got[:20]}")
        if hf.decode(got, skip_special_tokens=False) != text:
            problems.append("does not decode its ids back to the text")
        if has_gpt2_files and SPECIAL not in text:
            got2 = hf_gpt2.encode(text).ids
            if got2 != want:
                problems.append(f"encoder.json + vocab.bpe ids {got2[:20]}")
        if problems:
            failed += 1
            if failed <= 10:
                print(f"MISMATCH {tokenizer} case {i} {text[:60]!r}: gpt-rs {want[:20]}", file=sys.stderr)
                for p in problems:
                    print(f"    Hugging Face {p}", file=sys.stderr)
        else:
            passed += 1
    print(f"{tokenizer}: {passed} passed, {failed} failed")
    return passed, failed


def merges_of(tokenizer_json_text):
    merges = json.loads(tokenizer_json_text)["model"]["merges"]
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


def compare_with_hf_trainer(tokenizer, train_path):
    """Information only: does Hugging Face's BpeTrainer learn the same merges (GPT-2 split)?"""
    ours_text = open(f"{tokenizer}/tokenizer.json", encoding="utf-8").read()
    our_merges = merges_of(ours_text)
    trainer = trainers.BpeTrainer(
        vocab_size=len(json.loads(ours_text)["model"]["vocab"]),
        special_tokens=[SPECIAL],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=0,
        show_progress=False,
    )
    ref = Tokenizer(models.BPE())
    ref.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    ref.train_from_iterator([open(train_path, encoding="utf-8").read()], trainer)
    ref_merges = merges_of(ref.to_str())
    same = sum(1 for x, y in zip(our_merges, ref_merges) if x == y)
    first = next((k for k, (x, y) in enumerate(zip(our_merges, ref_merges)) if x != y), None)
    print(
        f"info: Hugging Face's BpeTrainer learns {len(ref_merges)} merges, gpt-rs {len(our_merges)}; "
        f"{same} agree position by position"
        + ("" if first is None else f" (first difference at {first}: {our_merges[first]!r} vs {ref_merges[first]!r})")
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpt", required=True)
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("tokenizers", nargs="+", help="folders written by gpt tokenizer train")
    a = ap.parse_args()

    heldout_cases = held_out_cases(open(a.heldout, encoding="utf-8").read())
    passed, failed = 0, 0
    for k, tokenizer in enumerate(a.tokenizers):
        cases = (heldout_cases if k == 0 else heldout_cases[::4]) + HARD
        p, f = check(a.gpt, tokenizer, cases)
        passed, failed = passed + p, failed + f
    compare_with_hf_trainer(a.tokenizers[0], a.train)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
