#!/usr/bin/env python3
"""Writes the training fixtures of crates/gpt/tests/fixtures/<name>/ for architectures beyond
GPT-2 (gpt2-tiny came from the same recipe): a tiny random Hugging Face model, the batch, and what
PyTorch computes with it: logits, loss, every gradient, 10 AdamW steps' losses and the final
weights, greedy continuations. tests/training_parity.rs runs every folder holding a fixture.json.
Run through scripts/make_training_fixtures.sh (a virtual environment with torch and transformers).
"""
import json
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parent.parent / "crates/gpt/tests/fixtures"
LR, BETAS, EPS, STEPS = 1e-3, (0.9, 0.999), 1e-8, 10
GREEDY_PROMPT, GREEDY_N = [1, 2, 3], 20

# name -> LlamaConfig arguments. Grouped-query attention with tied embeddings (SmolLM2's shape),
# and multi-head attention with a separate lm_head.
CASES = {
    "llama-tiny": dict(vocab_size=96, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                       rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True),
    "llama-untied": dict(vocab_size=80, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=24,
                         rms_norm_eps=1e-6, rope_theta=500.0, tie_word_embeddings=False),
}


def greedy(model, prompt, n):
    ids, margins = list(prompt), []
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids])).logits[0, -1]
            top = torch.topk(logits, 2).values
            margins.append(float(top[0] - top[1]))
            ids.append(int(torch.argmax(logits)))
    return ids[len(prompt):], margins


def make(name, args):
    torch.manual_seed(1337)
    config = transformers.LlamaConfig(**args, attention_dropout=0.0, attn_implementation="eager",
                                      bos_token_id=None, eos_token_id=None, pad_token_id=None)
    model = transformers.LlamaForCausalLM(config).float()
    model.eval()
    out = OUT / name
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    v = args["vocab_size"]
    seq = torch.randint(0, v, (3, 17))
    x, y = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()
    params = dict(model.named_parameters())
    t = {"x": x, "y": y}
    logits = model(x).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, v), y.reshape(-1))
    t["logits"], t["loss"] = logits.detach(), loss.detach()
    loss.backward()
    for n, p in params.items():
        t[f"grad.{n}"] = p.grad.detach().clone()
    t["greedy"], margins = (torch.tensor(a) for a in greedy(model, GREEDY_PROMPT, GREEDY_N))
    t["greedy_margins"] = margins.float()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=0.0)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x).logits.reshape(-1, v), y.reshape(-1))
        losses.append(loss.item())
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = torch.nn.functional.cross_entropy(model(x).logits.reshape(-1, v), y.reshape(-1))
    t["losses"], t["loss_after_steps"] = torch.tensor(losses), after
    for n, p in params.items():
        t[f"final.{n}"] = p.detach().clone()
    t["greedy_trained"] = torch.tensor(greedy(model, GREEDY_PROMPT, GREEDY_N)[0])
    save_file({k: (val.long() if val.dtype in (torch.int32, torch.int64) else val.float()).contiguous()
               for k, val in t.items()}, out / "expected.safetensors")
    fixture = {
        "optimizer": "adamw", "lr": LR, "beta1": BETAS[0], "beta2": BETAS[1], "eps": EPS,
        "weight_decay": 0.0, "weight_decay_applies_to": "all_parameters", "steps": STEPS,
        "lr_schedule": "constant", "grad_clip": None,
        "batch_tensors": {"inputs": "x", "targets": "y"},
        "made_by": f"scripts/make_training_fixtures.py: transformers {transformers.__version__}, "
                   f"torch {torch.__version__}, LlamaForCausalLM, float32, seed 1337",
    }
    (out / "fixture.json").write_text(json.dumps(fixture, indent=1) + "\n")
    (out / "README.md").write_text(
        f"# {name}\n\nA tiny random `LlamaForCausalLM` ({json.dumps(args)}) and what PyTorch computes with it, "
        "made by `scripts/make_training_fixtures.sh` (see that script for every step). `model.safetensors` holds "
        "the initial weights; `expected.safetensors`: the batch `x`, `y` (3 x 16, int64), `logits`, `loss`, "
        "`grad.<param>` for every parameter, `losses` before each of 10 AdamW steps (lr 1e-3, no weight decay), "
        "`loss_after_steps`, `final.<param>`, and greedy continuations of [1, 2, 3] before (`greedy`) and after "
        f"(`greedy_trained`) the steps. Loss {float(t['loss']):.6f}; losses {[round(l, 6) for l in losses]}.\n")
    print(f"{name}: loss {float(t['loss']):.6f}, after {STEPS} steps {float(after):.6f}")


if __name__ == "__main__":
    for name in sys.argv[1:] or CASES:
        make(name, CASES[name])
