"""Issue 2 benchmark: the Ray Data LLM pipeline vs bare ``vllm.LLM`` on the same tiny model and prompts.

Measures generated tokens/s of
  * ``bare``: ``vllm.LLM.chat`` in one process (the reference);
  * ``medforge``: :meth:`medforge.engines.engine.Engine.chat` (vLLM) with batches of 64 rows, 4 in flight
    (Ray Data: chat-template stage, vLLM engine actor, no separate (de)tokenize stages);
  * ``ray-defaults``: the same with Ray Data LLM's default stages (separate tokenize/detokenize);
    on a 4-logical-CPU local cluster this stalls (4 actor stages hold every CPU), see docs;
  * ``medforge-b256``: batches of 256 rows, 8 in flight (the project's default since this benchmark).
Each run starts a fresh engine, so the marginal rate between a small and a large run
(``(tokens_L - tokens_S) / (time_L - time_S)``) cancels engine start-up. Every row generates exactly
``--max-tokens`` tokens (``ignore_eos``). Also times the demo (``medforge demo``) end to end.

    .venv/bin/python bench/bench_generate.py                  # everything, ~15 min on 2 cores
    .venv/bin/python bench/bench_generate.py --skip-demo --small 100 --large 1100

A compute-bound model (issue 9): SmolLM2-135M-Instruct, the pipeline's own generation prompts
(3 seed tasks each), the same sampling and KV cache on both sides:

    .venv/bin/python bench/bench_generate.py --model small --prompts generation --skip-demo \
        --variants bare,medforge --small 16 --large 64 --max-tokens 128 --temperature 0.7 --top-p 0.9
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


PROMPTS = "short"
DTYPE = "float32"
SAMPLING = {"temperature": 1.0, "top_p": 1.0}


def prompts(n: int) -> list[list[dict[str, str]]]:
    if PROMPTS == "generation":
        # The synthesis job's own requests: 3 seed tasks shown, 2 new tasks asked for.
        import random

        from medforge.generate import instruction_task
        from medforge.generate.seeds import load_seeds

        seeds = load_seeds(None).seeds
        rng = random.Random(0)
        return [instruction_task.format_input(rng.sample(seeds, 3), 2, structured=True) for _ in range(n)]
    topics = ["asthma", "sepsis", "gout", "migraine", "anemia", "stroke", "lupus", "angina"]
    return [[{"role": "user", "content": f"Question {i}: explain the first-line management of {topics[i % 8]} "
                                         f"in a patient aged {20 + i % 60}."}] for i in range(n)]


def worker_bare(model: str, n: int, max_tokens: int) -> dict:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams

    llm = LLM(model=model, dtype=DTYPE, enforce_eager=True, gpu_memory_utilization=0.5, max_model_len=4096,
              enable_prefix_caching=True)
    params = SamplingParams(**SAMPLING, max_tokens=max_tokens, ignore_eos=True)
    t0 = time.perf_counter()
    outs = llm.chat(prompts(n), params, use_tqdm=False)
    gen = time.perf_counter() - t0
    return {"tokens": sum(len(o.outputs[0].token_ids) for o in outs), "generate_s": gen}


def worker_ray(model: str, n: int, max_tokens: int, variant: str) -> dict:
    import ray

    from medforge.engines.engine import engine_for
    from medforge.engines.config import SamplingConfig, VLLMTeacherConfig

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    extra = {
        "medforge": {"batch_size": 64, "max_concurrent_batches": 4},
        "ray-defaults": {"tokenize_stage": True, "detokenize_stage": True},
        "medforge-b256": {"batch_size": 256, "max_concurrent_batches": 8},
    }[variant]
    teacher = VLLMTeacherConfig(model=model, dtype=DTYPE, **extra)
    sampling = SamplingConfig(**SAMPLING, presence_penalty=0.0, max_tokens=max_tokens, ignore_eos=True)
    rows = [{"messages": m, "request_seed": i} for i, m in enumerate(prompts(n))]
    ds = engine_for(teacher).chat(ray.data.from_items(rows), sampling)
    tokens = sum(int(r["num_generated_tokens"]) for r in ds.iter_rows())
    ray.shutdown()
    return {"tokens": tokens}


def run_worker(kind: str, model: str, n: int, max_tokens: int) -> dict:
    t0 = time.perf_counter()
    cmd = [sys.executable, __file__, "--worker", kind, "--model", model, "--rows", str(n), "--max-tokens", str(max_tokens),
           "--prompts", PROMPTS, "--dtype", DTYPE, "--temperature", str(SAMPLING["temperature"]),
           "--top-p", str(SAMPLING["top_p"])]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    line = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not line:
        raise RuntimeError(f"{kind} worker failed:\n{proc.stderr[-4000:]}")
    return {**json.loads(line[-1]), "wall_s": wall}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", choices=["bare", "medforge", "ray-defaults", "medforge-b256"])
    ap.add_argument("--model", default="tiny", help="tiny (random LLaMA), small (SmolLM2-135M-Instruct) or a folder")
    ap.add_argument("--prompts", choices=["short", "generation"], default="short",
                    help="short one-line questions, or the synthesis job's prompts (3 seed tasks each)")
    ap.add_argument("--dtype", default="float32", help="engine dtype on both sides (float32, bfloat16)")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--rows", type=int, default=0)
    ap.add_argument("--small", type=int, default=200)
    ap.add_argument("--large", type=int, default=2200)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--variants", default="bare,medforge,ray-defaults")
    args = ap.parse_args()
    global PROMPTS, DTYPE
    PROMPTS, DTYPE = args.prompts, args.dtype
    SAMPLING.update(temperature=args.temperature, top_p=args.top_p)
    if args.model in ("tiny", "small") and not args.worker:
        if args.model == "tiny":
            from medforge.engines.tiny import make_tiny_models

            args.model = str(make_tiny_models(REPO / ".tiny_models")["llama"])
        else:
            from medforge.engines.small import make_small_models

            args.model = str(make_small_models(REPO / ".small_models")["llm"])
    if args.worker == "bare":
        print(json.dumps(worker_bare(args.model, args.rows, args.max_tokens)))
        return 0
    if args.worker:
        print(json.dumps(worker_ray(args.model, args.rows, args.max_tokens, args.worker)))
        return 0

    results: dict = {"model": args.model, "prompts": args.prompts, "dtype": args.dtype, "sampling": SAMPLING,
                     "small": args.small, "large": args.large, "max_tokens": args.max_tokens, "runs": {}}
    if not args.skip_demo:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "medforge.cli", "demo", "--out", "runs/bench_demo"], cwd=REPO,
                              capture_output=True, text=True)
        results["demo_wall_s"] = round(time.perf_counter() - t0, 1)
        results["demo_ok"] = proc.returncode == 0
        print(f"demo: {results['demo_wall_s']} s (ok={results['demo_ok']})", flush=True)
    # Interleave variants so drift in machine load hits them alike.
    variants = args.variants.split(",")
    for n in (args.small, args.large):
        for kind in variants:
            r = run_worker(kind, args.model, n, args.max_tokens)
            results["runs"].setdefault(kind, {})[n] = r
            print(f"{kind:>12} rows={n:>5}: {r}", flush=True)
    summary = {}
    for kind in variants:
        s, l = results["runs"][kind][args.small], results["runs"][kind][args.large]
        summary[kind] = {"marginal_tok_per_s": round((l["tokens"] - s["tokens"]) / (l["wall_s"] - s["wall_s"]), 1),
                         "wall_small_s": round(s["wall_s"], 1), "wall_large_s": round(l["wall_s"], 1)}
    if "bare" in summary:
        base = summary["bare"]["marginal_tok_per_s"]
        for kind in summary:
            summary[kind]["ratio_vs_bare"] = round(summary[kind]["marginal_tok_per_s"] / base, 3)
    results["summary"] = summary
    print(json.dumps(summary, indent=2))
    out = REPO / "runs" / f"bench_generate_{Path(args.model).name}_{args.prompts}_{args.dtype}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
