#!/usr/bin/env python3
"""PyTorch + peft reference for `cargo bench --bench arrow`: PEFT's Arrow routed forward, timed.

Model and batch as `benches/forward_torch.py` (random LlamaForCausalLM, hidden 512, 8 layers,
batch 8 x 128 with rows 4-7 padded to 96, float32, CPU). For each adapter count N (4, 8, 16, 30):
N random rank-16 LoRAs (alpha 32) on all seven modules, saved as PEFT adapter folders, loaded with
`create_arrow_model(model, paths, ArrowConfig(top_k=4, router_temperature=1.0))`. PEFT computes
the prototypes on the first forward: that forward is reported apart as the setup, then the median
of --iters timed forwards after --warmup more. The base model alone is timed first.

    python benches/arrow_torch.py --threads 2 --iters 10 [--adapters 4,8,16,30]

Needs torch, transformers, peft (tests/fixtures/requirements.txt pins the versions used).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import forward_torch as ft  # noqa: E402


def save_adapters(torch, n, root):
    """N random rank-16 adapters on all seven modules, each saved in its own folder."""
    from peft import LoraConfig, get_peft_model

    paths = []
    for i in range(n):
        model = ft.build_model(torch)
        cfg = LoraConfig(r=ft.RANK, lora_alpha=ft.ALPHA, target_modules=list(ft.MODULES),
                         lora_dropout=0.0, bias="none")
        pm = get_peft_model(model, cfg)
        with torch.no_grad():
            for name, p in pm.named_parameters():
                if ".lora_A." in name or ".lora_B." in name:
                    p.normal_(0.0, 0.02)
        path = os.path.join(root, f"a{i:02d}")
        pm.save_pretrained(path)
        paths.append(path)
        del pm, model
    return paths


def timed(torch, model, ids, mask, warmup, iters):
    with torch.inference_mode():
        t0 = time.perf_counter()
        model(input_ids=ids, attention_mask=mask)
        first = time.perf_counter() - t0
        for _ in range(warmup):
            model(input_ids=ids, attention_mask=mask)
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            model(input_ids=ids, attention_mask=mask)
            times.append(time.perf_counter() - t0)
    return first, statistics.median(times), times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--adapters", default="4,8,16,30")
    args = ap.parse_args()

    import peft
    import torch
    import transformers
    from peft import ArrowConfig, create_arrow_model

    transformers.logging.set_verbosity_error()
    print(f"machine: {ft.cpu_model()} · torch CPU kernels {torch.backends.cpu.get_cpu_capability()} · {args.threads} CPU threads")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ids, mask = ft.build_batch(torch)
    counts = [int(n) for n in args.adapters.split(",") if n]
    real = int(mask.sum())

    def report(case, n, first, med, times):
        print(f"  {case:<28} median {med * 1e3:8.2f} ms  {real / med:7.0f} tokens/s"
              + (f"  (first forward, prototypes included: {first * 1e3:.1f} ms)" if n else ""))
        print(json.dumps({"bench": "arrow_torch", "case": case, "adapters": n,
                          "median_ms": med * 1e3, "first_ms": first * 1e3,
                          "times_ms": [t * 1e3 for t in times], "threads": args.threads,
                          "torch": torch.__version__, "transformers": transformers.__version__,
                          "peft": peft.__version__}))

    first, med, times = timed(torch, ft.build_model(torch), ids, mask, args.warmup, args.iters)
    report("no adapters", 0, first, med, times)
    with tempfile.TemporaryDirectory() as root:
        paths = save_adapters(torch, max(counts), root)
        for n in counts:
            model = create_arrow_model(ft.build_model(torch), paths[:n],
                                       ArrowConfig(top_k=4, router_temperature=1.0, rng_seed=0))
            model.eval()
            first, med, times = timed(torch, model, ids, mask, args.warmup, args.iters)
            report(f"{n} routed (Arrow top-4)", n, first, med, times)
            del model


if __name__ == "__main__":
    main()
