"""Loads a gpt-rs training checkpoint with Hugging Face transformers and compares its next-token
logits with `gpt inspect logits` on the same folder. Usage: python hf_checkpoint_check.py DIR GPT."""
import json, subprocess, sys
import torch
from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

ckpt, gpt = sys.argv[1], sys.argv[2]
prompts = ["ROMEO:\nWhat say you", "First Citizen:\nBefore we proceed", "\n"]
model = GPT2LMHeadModel.from_pretrained(ckpt).eval()
tok = PreTrainedTokenizerFast(tokenizer_file=f"{ckpt}/tokenizer.json")
passed = failed = 0
for p in prompts:
    ids = tok(p, add_special_tokens=False).input_ids
    with torch.no_grad():
        hf = model(torch.tensor([ids])).logits[0, -1]
    ours = json.loads(subprocess.check_output([gpt, "inspect", "logits", p, "--model", ckpt, "--top", "10", "--json", "--precision", "f32"]))
    ok = ours["ids"] == ids and all(abs(t["logit"] - float(hf[t["id"]])) < 1e-4 for t in ours["top"])
    ok = ok and [t["id"] for t in ours["top"]] == torch.topk(hf, 10).indices.tolist()
    passed, failed = passed + ok, failed + (not ok)
    print(("ok  " if ok else "FAIL"), repr(p))
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
