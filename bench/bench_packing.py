"""Effective tokens/s (non-pad tokens per second) of SFT with packing vs padding.

MedInstruct-like lengths: lognormal with a median around 200 tokens (AlpaCare's responses).
Same tiny LLaMA, same examples, same step count in tokens; plain torch on this machine (no Ray),
because packing is a per-batch property. Goal (issue 5): packing >= 2x padding.

    PYTHONPATH=src .venv/bin/python bench/bench_packing.py [--model .tiny_models/tiny-llama]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=None, help="HF causal LM folder (default: build the tiny LLaMA)")
    p.add_argument("--examples", type=int, default=192)
    p.add_argument("--median", type=float, default=200.0)
    p.add_argument("--sigma", type=float, default=0.5)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--micro-batch", type=int, default=8, help="sequences per padded batch")
    args = p.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from medforge.finetune.packing import collate_packed, collate_padded, pack_greedy

    model_dir = args.model
    if model_dir is None:
        from medforge.engines.tiny import make_tiny_models

        model_dir = make_tiny_models(tempfile.mkdtemp(prefix="bench-pack-"))["llama"]
    torch.manual_seed(0)
    rng = random.Random(0)
    lengths = [min(args.max_length, max(16, int(rng.lognormvariate(math.log(args.median), args.sigma)))) for _ in range(args.examples)]
    exs = []
    for n in lengths:
        ids = [rng.randrange(10, 2000) for _ in range(n)]
        prompt = n // 3
        exs.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    results = {}
    for mode in ("padded_longest", "padded_max_length", "packed"):
        model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa")
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        if mode == "packed":
            rows = pack_greedy(exs, args.max_length)
            per = max(1, round(args.micro_batch * args.median / args.max_length * 1.3))
            batches = [collate_packed(rows[i : i + per], 0) for i in range(0, len(rows), per)]
        else:
            batches = []
            for i in range(0, len(exs), args.micro_batch):
                chunk = exs[i : i + args.micro_batch]
                if mode == "padded_max_length":
                    chunk = [*chunk, {"input_ids": [0] * args.max_length, "labels": [-100] * args.max_length}]
                    b = collate_padded(chunk, 0)
                    b = {k: (v[:-1] if hasattr(v, "shape") else v - args.max_length) for k, v in b.items()}
                else:
                    b = collate_padded(chunk, 0)
                batches.append(b)
        slots = sum(b["input_ids"].numel() for b in batches)
        t0 = time.perf_counter()
        for b in batches:
            kw = {k: b[k] for k in ("input_ids", "labels", "attention_mask", "position_ids") if k in b}
            loss = model(**kw, use_cache=False).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
        dt = time.perf_counter() - t0
        real = sum(b["num_tokens"] for b in batches)
        results[mode] = {"effective_tokens_per_s": real / dt, "pad_fraction": 1 - real / slots, "batches": len(batches), "s": dt}
        print(json.dumps({"mode": mode, **results[mode]}), flush=True)
    out = {
        "bench": "packing",
        "examples": args.examples,
        "median_len": sorted(lengths)[len(lengths) // 2],
        "mean_len": sum(lengths) / len(lengths),
        "speedup_vs_padded_longest": results["packed"]["effective_tokens_per_s"] / results["padded_longest"]["effective_tokens_per_s"],
        "speedup_vs_padded_max_length": results["packed"]["effective_tokens_per_s"] / results["padded_max_length"]["effective_tokens_per_s"],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
