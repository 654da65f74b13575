"""nanoGPT's model and training step in PyTorch, for measuring training speed beside gpt-rs.

The same architecture as gpt-rs's GPT-2 (learned positions, LayerNorm, GELU tanh MLP, tied
unembedding, no dropout), AdamW, character-level Tiny Shakespeare batches drawn at random.
Usage: python nanogpt_cpu.py CORPUS --steps N --threads T [--n-layer 4 --n-head 4 --n-embd 128
--block-size 64 --batch-size 12]. Prints one JSON line with tokens/s (after 5 warm-up steps).
Under `torchrun --nproc_per_node N` it is PyTorch's DistributedDataParallel over gloo: each rank
takes batch-size / N sequences of every global batch (rank 0 prints the global tokens/s).
"""
import argparse, json, math, os, time
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("corpus")
p.add_argument("--steps", type=int, default=100)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--n-layer", type=int, default=4)
p.add_argument("--n-head", type=int, default=4)
p.add_argument("--n-embd", type=int, default=128)
p.add_argument("--block-size", type=int, default=64)
p.add_argument("--batch-size", type=int, default=12)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(1337)

text = open(a.corpus, encoding="utf-8").read()
chars = sorted(set(text))
stoi = {c: i for i, c in enumerate(chars)}
data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
V, C, T, B = len(chars), a.n_embd, a.block_size, a.batch_size


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        h = lambda z: z.view(b, t, a.n_head, C // a.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(h(q), h(k), h(v), is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(b, t, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(T, C)
        self.h = nn.ModuleList([Block() for _ in range(a.n_layer)])
        self.ln_f = nn.LayerNorm(C)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for blk in self.h:
            x = blk(x)
        logits = self.ln_f(x) @ self.wte.weight.T
        return F.cross_entropy(logits.view(-1, V), targets.view(-1))


world = int(os.environ.get("WORLD_SIZE", "1"))
rank = int(os.environ.get("RANK", "0"))
model = GPT()
if world > 1:
    dist.init_process_group("gloo")
    model = torch.nn.parallel.DistributedDataParallel(model)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
local_b = B // world


def step():
    ix = torch.randint(len(data) - T, (local_b,))
    x = torch.stack([data[i : i + T] for i in ix])
    y = torch.stack([data[i + 1 : i + 1 + T] for i in ix])
    loss = model(x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item()


for _ in range(5):
    step()
t0 = time.perf_counter()
for _ in range(a.steps):
    loss = step()
dt = time.perf_counter() - t0
if rank == 0:
    print(json.dumps({"engine": "pytorch", "torch": torch.__version__, "threads": a.threads,
                      "ranks": world, "steps": a.steps, "tokens_per_s": a.steps * local_b * world * T / dt,
                      "ms_per_step": 1000 * dt / a.steps}))
if world > 1:
    dist.destroy_process_group()
