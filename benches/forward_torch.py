#!/usr/bin/env python3
"""PyTorch + peft reference for `cargo bench --bench forward`: the same forward work, timed.

Model: random LlamaForCausalLM, hidden 512, 8 layers, 8 heads / 2 kv heads, intermediate 1408,
vocab 32000, untied, float32, CPU. Batch 8 x 128, right-padded: rows 0-3 have 128 real tokens,
rows 4-7 have 96 (attention_mask 0 on the last 32). Throughput counts 8 * 128 = 1024 tokens per
forward, pads included.

Cases:
  base        no adapters
  lora30      30 rank-16 LoRA adapters (alpha 32, so scale 2) on q,k,v,o,gate,up,down of every
              layer, all active at once (model.base_model.set_adapter([...all 30...])), unmerged,
              random nonzero A and B.

Each case: torch.set_num_threads(--threads), torch.inference_mode(), --warmup forwards, then the
median of --iters timed forwards. Prints a human line and one JSON line per case.

    python benches/forward_torch.py --threads 2 --iters 10
    python benches/forward_torch.py --threads 2 --iters 10 --arch qwen3   # Qwen3ForCausalLM,
        # same sizes with head_dim 128, q/k norms and tied embeddings (cargo bench ... --arch qwen3)

Needs torch, transformers, peft (tests/fixtures/requirements.txt pins the versions used).
"""

import argparse
import json
import os
import statistics
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

HIDDEN = 512
LAYERS = 8
HEADS = 8
KV_HEADS = 2
INTERMEDIATE = 1408
VOCAB = 32000
BATCH = 8
SEQ = 128
SHORT_ROWS = 4
SHORT_LEN = 96
N_ADAPTERS = 30
RANK = 16
ALPHA = 32
MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build_model(torch, arch="llama"):
    from transformers import LlamaConfig, LlamaForCausalLM

    if arch == "qwen3":
        from transformers import Qwen3Config, Qwen3ForCausalLM

        cfg = Qwen3Config(
            vocab_size=VOCAB,
            hidden_size=HIDDEN,
            intermediate_size=INTERMEDIATE,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            num_key_value_heads=KV_HEADS,
            head_dim=128,
            max_position_embeddings=2048,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            tie_word_embeddings=True,
        )
        model = Qwen3ForCausalLM(cfg).to(torch.float32)
        return randomized(torch, model)
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg).to(torch.float32)
    return randomized(torch, model)


def randomized(torch, model):
    """Weights N(0, 0.02), norms 1, as benches/support/random.rs makes them; eval mode."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02)
    model.eval()
    return model


def build_batch(torch):
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=g, dtype=torch.int64)
    attention_mask = torch.ones((BATCH, SEQ), dtype=torch.int64)
    attention_mask[BATCH - SHORT_ROWS :, SHORT_LEN:] = 0
    input_ids[BATCH - SHORT_ROWS :, SHORT_LEN:] = 0  # pad id
    return input_ids, attention_mask


def add_adapters(torch, model):
    from peft import LoraConfig, get_peft_model

    def cfg():
        return LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=list(MODULES), lora_dropout=0.0, bias="none")

    names = [f"a{i:02d}" for i in range(N_ADAPTERS)]
    pm = get_peft_model(model, cfg(), adapter_name=names[0])
    for n in names[1:]:
        pm.add_adapter(n, cfg())
    with torch.no_grad():
        for pname, p in pm.named_parameters():
            if ".lora_A." in pname or ".lora_B." in pname:
                p.normal_(0.0, 0.02)
    pm.base_model.set_adapter(names)
    pm.eval()
    active = pm.base_model.active_adapters
    assert sorted(active) == names, active
    return pm


def time_case(torch, model, input_ids, attention_mask, warmup, iters):
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(input_ids=input_ids, attention_mask=attention_mask)
        for _ in range(iters):
            t0 = time.perf_counter()
            out = model(input_ids=input_ids, attention_mask=attention_mask)
            times.append(time.perf_counter() - t0)
            assert out.logits.shape == (BATCH, SEQ, VOCAB)
    return statistics.median(times), times


def cpu_model():
    """The processor's model name, as the Rust benchmarks print it (first `model name` of cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--cases", default="base,lora30", help="comma-separated subset of base,lora30")
    ap.add_argument("--arch", default="llama", choices=["llama", "qwen3"])
    args = ap.parse_args()

    import peft
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    print(f"machine: {cpu_model()} · torch CPU kernels {torch.backends.cpu.get_cpu_capability()} · {args.threads} CPU threads")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    input_ids, attention_mask = build_batch(torch)
    tokens = BATCH * SEQ
    cases = [c for c in args.cases.split(",") if c]
    for case in cases:
        model = build_model(torch, args.arch)
        if case == "lora30":
            model = add_adapters(torch, model)
        elif case != "base":
            raise SystemExit(f"unknown case {case}")
        med, times = time_case(torch, model, input_ids, attention_mask, args.warmup, args.iters)
        tps = tokens / med
        print(f"{case}: {med * 1e3:.1f} ms/forward, {tps:.0f} tokens/s "
              f"(median of {args.iters}, {args.threads} threads)")
        print(json.dumps({
            "bench": "forward_torch",
            "arch": args.arch,
            "case": case,
            "adapters": N_ADAPTERS if case == "lora30" else 0,
            "rank": RANK if case == "lora30" else 0,
            "batch": BATCH,
            "seq": SEQ,
            "tokens": tokens,
            "threads": args.threads,
            "warmup": args.warmup,
            "iters": args.iters,
            "ms_per_forward": med * 1e3,
            "tokens_per_s": tps,
            "times_ms": [t * 1e3 for t in times],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        }))
        del model


if __name__ == "__main__":
    main()
