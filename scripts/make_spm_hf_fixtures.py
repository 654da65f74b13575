"""Expected ids from Hugging Face `tokenizers` for SentencePiece-style `tokenizer.json` files.

Writes crates/gpt/tests/fixtures/spm-hf/:
  - tinyshakespeare/tokenizer.json: a BPE with byte fallback trained here by `tokenizers` on Tiny
    Shakespeare (normalizer Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer, BOS <s> added by
    a TemplateProcessing post-processor, a user-defined added token <|user|>), ~500 tokens;
  - one NAME.json per tokenizer (this one, and arch/{mistral,phi3,gemma3}/hf/tokenizer.json made
    by transformers): for every test string, `tokenizers`' ids without and with the
    post-processor's special tokens and its decoding (see README.md there).
Run by make_spm_hf_fixtures.sh; never in CI.
"""

import json
import os
import sys

import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors, trainers

FIXTURES = sys.argv[1]
OUT = os.path.join(FIXTURES, "spm-hf")
SPACE = "\u2581"

TEXTS = [
    "",
    " ",
    "Hello world",
    "hello",
    "First Citizen:\nBefore we proceed any further, hear me speak.",
    "  two leading spaces",
    "trailing spaces   ",
    "a  b   c    d",
    "\n",
    "line one\nline two\n\n\nthree",
    "\ttabs\tand\r\nCRLF\r\n",
    "don't you'll I'M we've they'd",
    "12345 6789 0.5 3,000",
    "Déjà vu: naïve café, façade — “quotes” …",
    "안녕하세요 세계",
    "emoji 😀🍕 and 👩‍👩‍👧 family",
    "中文字符 日本語",
    "\u00a0no-break\u2003em space",
    "KING RICHARD III:\nNow is the winter of our discontent\nMade glorious summer by this sun of York;",
    "x" * 300,
    "ab" * 150,
    "!!!???...,,,;;;",
]


def special_cases(tok):
    """Every added token's text typed in text, alone and among words."""
    out = []
    for a in sorted(tok.get_added_tokens_decoder().values(), key=lambda a: a.content):
        c = a.content
        out += [c, f"x{c} y", f"{c}{c}z", f" {c}hello", f"Hello {c}\nworld{c}"]
    return out


def train_tinyshakespeare():
    text = open(os.path.join(FIXTURES, "tinyshakespeare", "input.txt"), encoding="utf-8").read()
    lines = [l for l in text.split("\n") if l]
    specials = ["<unk>", "<s>", "</s>"]
    t = Tokenizer(models.BPE(unk_token="<unk>"))
    t.normalizer = normalizers.Sequence([normalizers.Prepend(SPACE), normalizers.Replace(" ", SPACE)])
    trainer = trainers.BpeTrainer(vocab_size=244, special_tokens=specials, show_progress=False)
    t.train_from_iterator(lines, trainer=trainer)
    trained = json.loads(t.to_str())
    # Llama's layout: the special tokens, the 256 byte-fallback pieces, then the learned pieces.
    vocab = {s: i for i, s in enumerate(specials)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    learned = sorted(trained["model"]["vocab"].items(), key=lambda kv: kv[1])
    for piece, _ in learned:
        if piece not in vocab:
            vocab[piece] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["model"]["merges"]]
    model = models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Sequence([normalizers.Prepend(SPACE), normalizers.Replace(" ", SPACE)])
    tok.decoder = decoders.Sequence(
        [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok.add_tokens([AddedToken("<|user|>", special=False, normalized=False)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    folder = os.path.join(OUT, "tinyshakespeare")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "tokenizer.json")
    tok.save(path, pretty=True)
    return path


def write_cases(name, path, gguf=None):
    tok = Tokenizer.from_file(path)
    cases = []
    for text in TEXTS + special_cases(tok):
        plain = tok.encode(text, add_special_tokens=False).ids
        full = tok.encode(text, add_special_tokens=True).ids
        cases.append(
            {
                "text": text,
                "ids": plain,
                "ids_with_special": full,
                "decoded": tok.decode(plain, skip_special_tokens=False),
                "decoded_skip_special": tok.decode(plain, skip_special_tokens=True),
            }
        )
    doc = {
        "tokenizer": os.path.relpath(path, FIXTURES),
        "gguf": gguf,
        "made_with": {"tokenizers": tokenizers.__version__},
        "cases": cases,
    }
    with open(os.path.join(OUT, f"{name}.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{name}: {len(cases)} cases")


os.makedirs(OUT, exist_ok=True)
write_cases("tinyshakespeare", train_tinyshakespeare())
for arch in ["mistral", "phi3", "gemma3"]:
    write_cases(
        arch,
        os.path.join(FIXTURES, "arch", arch, "hf", "tokenizer.json"),
        gguf=f"arch/{arch}/model-f16.gguf",
    )
