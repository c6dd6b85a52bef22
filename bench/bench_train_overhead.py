"""Tokens/s of Ray Train + DeepSpeed vs a bare single-process torch loop, same tiny model and data.

Both sides use every core of the machine: the bare loop one process with all threads, Ray Train
``--workers`` processes (ZeRO-2, gloo) with one thread each. Throughput counts non-pad tokens
and excludes start-up (Ray, worker spawn, DeepSpeed init): it is the steady-state step rate the
trainer reports. The ratio is bare / Ray.

    PYTHONPATH=src .venv/bin/python bench/bench_train_overhead.py [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def bare_loop(model_dir: Path, data: Path, steps: int, micro_batch: int, max_length: int) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medforge.io import read_jsonl
    from medforge.finetune.packing import collate_padded
    from medforge.finetune.prompts import tokenize_example

    torch.set_num_threads(os.cpu_count() or 1)
    tok = AutoTokenizer.from_pretrained(model_dir)
    exs = [e for r in read_jsonl(data) if (e := tokenize_example(r, tok, "alpaca", max_length, "truncate")[0])]
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batches = [collate_padded(exs[i : i + micro_batch], tok.pad_token_id) for i in range(0, len(exs), micro_batch)]
    tokens, t0 = 0, None
    for i in range(steps + 2):
        if i == 2:  # first steps warm the allocator
            tokens, t0 = 0, time.perf_counter()
        b = batches[i % len(batches)]
        loss = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"], use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        tokens += b["num_tokens"]
    return tokens / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--micro-batch", type=int, default=4, help="per Ray worker; the bare loop uses workers x this")
    p.add_argument("--max-length", type=int, default=256)
    args = p.parse_args()

    import ray

    from medforge.engines.tiny import make_tiny_models
    from medforge.io import atomic_write_jsonl
    from medforge.finetune.config import FinetuneConfig
    from medforge.finetune.llm import run_finetune
    from medforge.finetune.synthetic import instruction_rows

    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    model_dir = make_tiny_models(work / "models")["llama"]
    data = work / "data.jsonl"
    atomic_write_jsonl(data, instruction_rows(args.workers * args.micro_batch * (args.steps + 4), seed=0, median_words=40))

    bare = bare_loop(model_dir, data, args.steps, args.workers * args.micro_batch, args.max_length)
    print(json.dumps({"mode": "bare_torch", "tokens_per_s": bare}), flush=True)

    ray.init(address="local", num_cpus=max(4, args.workers + 2), include_dashboard=False, log_to_driver=False)
    try:
        cfg = FinetuneConfig.model_validate(
            {
                "model": str(model_dir),
                "data": {"path": str(data), "max_length": args.max_length, "eval_fraction": 0.0},
                "optim": {"lr": 1e-4, "epochs": 1, "max_steps": args.steps, "micro_batch_size": args.micro_batch, "warmup_ratio": 0.1},
                "deepspeed": {"zero_stage": 2},
                "scaling": {"num_workers": args.workers},
                "checkpoint": {"storage_path": str(work / "ckpt"), "name": "bench", "max_failures": 0},
                "logger": {"kind": "jsonl", "every_steps": max(1, args.steps // 4)},
                "output": {"dir": str(work / "export")},
            }
        )
        t0 = time.perf_counter()
        summary = run_finetune(cfg)
        wall = time.perf_counter() - t0
    finally:
        ray.shutdown()
    # tokens_per_s is the trainer's last logging window (the last quarter of the steps): steady state.
    ray_tps = summary.tokens_per_s
    print(
        json.dumps(
            {
                "bench": "train_overhead",
                "bare_tokens_per_s": bare,
                "ray_deepspeed_tokens_per_s": ray_tps,
                "overhead_ratio_bare_over_ray": bare / ray_tps,
                "ray_job_wall_s_incl_startup": wall,
                "steps": args.steps,
                "workers": args.workers,
            }
        )
    )


if __name__ == "__main__":
    main()
