#!/usr/bin/env python3
"""PyTorch reference for `cargo bench --bench recycle`: the same training-step work, timed.

Model: random LlamaForCausalLM, hidden 512, 8 layers, 8 heads / 2 kv heads, intermediate 1408,
vocab 32000, untied, float32, CPU. Batch 8 x 64 tokens, loss on the last 16 tokens of each row
(the answer), LM head on those rows only (as loracycle does).

Cases:
  base        forward + backward with every weight requiring grad (full fine-tuning's step)
  recipe      forward + backward of the gradient recipe: 30 rank-16 LoRAs (scale 2) on all seven
              modules as one concatenated side branch per module, frozen; one coefficient per
              (adapter, layer, module) through leaky-ReLU, the only tensor requiring grad. The
              branch is added by a forward hook: y += ((x A_catᵀ) * g) B_catᵀ (what peft does per
              adapter, here concatenated).

peft has no coefficient tuning, so the recipe is written with plain torch ops here.

    python benches/recycle_torch.py --threads 2 --iters 10
"""

import argparse
import json
import os
import statistics
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

HIDDEN, LAYERS, HEADS, KV, INTER, VOCAB = 512, 8, 8, 2, 1408, 32000
BATCH, SEQ, ANSWER = 8, 64, 16
K, RANK, SCALE = 30, 16, 2.0
MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    import torch
    import torch.nn.functional as F
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(args.threads)
    from forward_torch import cpu_model  # this folder is on sys.path when the script runs

    print(f"machine: {cpu_model()} · torch CPU kernels {torch.backends.cpu.get_cpu_capability()} · {args.threads} CPU threads")
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=KV, max_position_embeddings=2048,
        rms_norm_eps=1e-5, tie_word_embeddings=False, attn_implementation="sdpa",
    )
    model = LlamaForCausalLM(cfg).float().eval()
    ids = torch.tensor([[(i * 7919 + r * 104729) % VOCAB for i in range(SEQ)] for r in range(BATCH)])
    targets = ids[:, SEQ - ANSWER:].reshape(-1)

    def loss_fn():
        h = model.model(input_ids=ids).last_hidden_state  # (B, T, H)
        rows = h[:, SEQ - ANSWER - 1:SEQ - 1, :].reshape(-1, HIDDEN)
        return F.cross_entropy(model.lm_head(rows), targets)

    def timed(step):
        for _ in range(args.warmup):
            step()
        ts = []
        for _ in range(args.iters):
            t = time.perf_counter()
            step()
            ts.append((time.perf_counter() - t) * 1e3)
        return statistics.median(ts), min(ts)

    def base_step():
        model.zero_grad(set_to_none=True)
        loss_fn().backward()

    for p in model.parameters():
        p.requires_grad_(True)
    base_ms, base_min = timed(base_step)
    print(f"  base fwd+bwd (all weight gradients)        median {base_ms:8.1f} ms (min {base_min:8.1f})")
    print(json.dumps({"case": "base", "median_ms": base_ms, "min_ms": base_min}))

    for p in model.parameters():
        p.requires_grad_(False)
    coef = torch.full((LAYERS * 7, K), 0.01, requires_grad=True)
    hooks = []
    for l, layer in enumerate(model.model.layers):
        for mi, name in enumerate(MODULES):
            lin = getattr(layer.self_attn if mi < 4 else layer.mlp, name)
            a = torch.randn(K * RANK, lin.in_features) * 0.02
            b = torch.randn(lin.out_features, K * RANK) * 0.02
            g_row = l * 7 + mi

            def hook(mod, inp, out, a=a, b=b, g_row=g_row):
                g = F.leaky_relu(coef[g_row], 0.01).repeat_interleave(RANK) * SCALE
                return out + ((inp[0] @ a.T) * g) @ b.T

            hooks.append(lin.register_forward_hook(hook))

    def recipe_step():
        coef.grad = None
        loss_fn().backward()

    ms, mn = timed(recipe_step)
    print(f"  recipe step, k=30 r16                      median {ms:8.1f} ms (min {mn:8.1f})  {ms / base_ms:5.2f}x base")
    print(json.dumps({"case": "recipe", "median_ms": ms, "min_ms": mn}))
    for h in hooks:
        h.remove()


if __name__ == "__main__":
    main()
