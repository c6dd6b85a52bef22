"""Benchmark of the pipeline job (issue 14): one job vs the same stages chained by hand, and a cached rerun.

    .venv/bin/python bench/bench_pipeline.py --test-set ../shared/data/alpacare/MedInstruct-test.jsonl
    .venv/bin/python bench/bench_pipeline.py --config configs/pipeline/local_small.yaml --models .small_models/smollm2-135m-instruct ...

One run, in this order, each stage's settings identical (the pipeline's own resolved stage configs,
written out as the separate jobs' YAML):

1. **chained by hand** (the reference: what a user did before the pipeline): ``generate.py``,
   ``finetune.py``, ``evaluate.py`` for the tuned model (vLLM actors on the merged export) and
   again for the base model (the judge is the base model on vLLM actors too), then ``serve.py``
   until the tuned adapter answers one chat request through the ``openai`` client. Each is its own
   process with its own Ray cluster, as separate commands are.
2. **pipeline, fresh**: ``ray_jobs/pipeline.py`` in a new run folder: one Ray cluster, one Serve
   engine for evaluation (answers of both models and the judge) and serving.
3. **pipeline, rerun with no change**: every stage cached.

Wall time of each process (start-up included, since that is what a user waits for). Results go to
``--results`` as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from medforge.config.base import load_config  # noqa: E402
from medforge.pipeline.config import PipelineConfig  # noqa: E402
from medforge.pipeline.plan import make_plan  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.pop("RAY_ADDRESS", None)
    e.setdefault("MEDFORGE_API_KEYS", "bench-key-0123456789")
    return e


def timed(args: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env(), stdout=f, stderr=subprocess.STDOUT,
                            start_new_session=True).returncode
    if rc != 0:
        raise SystemExit(f"{args[0]} failed ({rc}); see {log}")
    return time.perf_counter() - t0


def dump(model, path: Path) -> Path:
    path.write_text(yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False))
    return path


def chained(cfg: PipelineConfig, work: Path) -> dict[str, float]:
    """The four stages as separate jobs with the same settings."""
    plan = make_plan(cfg)
    times = {}
    times["generate"] = timed(["ray_jobs/generate.py", "--config", str(dump(plan.generate, work / "gen.yaml"))],
                              work / "gen.log")
    times["finetune"] = timed(["ray_jobs/finetune.py", "--config", str(dump(plan.finetune, work / "ft.yaml"))],
                              work / "ft.log")
    judge = {**cfg.serve.llm.engine.model_dump(mode="json"), "kind": "vllm", "model": cfg.finetune.model}
    times["evaluate"] = 0.0
    for which, model in (("tuned", plan.finetune.output.dir), ("base", cfg.finetune.model)):
        data = cfg.evaluate.model_dump(mode="json")
        data["engine"] = {**judge, "model": model}
        data["judge"]["engine"] = judge
        data["output"] = {"dir": str(work / f"eval_{which}")}
        path = work / f"eval_{which}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        times["evaluate"] += timed(["ray_jobs/evaluate.py", "--config", str(path)], work / f"eval_{which}.log")
    port = free_port()
    serve_file = {"proxy_location": "HeadOnly", "http_options": {"host": "127.0.0.1", "port": port},
                  "applications": plan.serve_apps("MEDFORGE_API_KEYS")}
    (work / "serve.yaml").write_text(yaml.safe_dump(serve_file, sort_keys=False))
    t0 = time.perf_counter()
    with open(work / "serve.log", "w") as f:
        proc = subprocess.Popen([sys.executable, "ray_jobs/serve.py", "--config", str(work / "serve.yaml")], cwd=ROOT,
                                env=env(), stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        from openai import OpenAI

        from medforge.pipeline.runner import wait_for_models

        base = f"http://127.0.0.1:{port}/v1"
        wait_for_models(base, env()["MEDFORGE_API_KEYS"], list(plan.served_ids.values()))
        OpenAI(base_url=base, api_key=env()["MEDFORGE_API_KEYS"]).chat.completions.create(
            model=cfg.serve.tuned_id, messages=[{"role": "user", "content": cfg.serve.smoke_question}], max_tokens=96)
        times["serve"] = time.perf_counter() - t0
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/pipeline/local_tiny.yaml")
    ap.add_argument("--models", default=None, help="the LLM folder (default: tiny-llama built into a temp folder)")
    ap.add_argument("--test-set", required=True, help="MedInstruct-test.jsonl")
    ap.add_argument("--results", default="bench/out/pipeline.jsonl")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    model = args.models
    if model is None:
        from medforge.engines.tiny import make_tiny_models

        model = str(make_tiny_models(work / "tiny")["llama"])
    overrides = [f"generate.engine.model={model}", f"finetune.model={model}", f"evaluate.data.test_path={args.test_set}"]
    cfg = load_config(PipelineConfig, ROOT / args.config, [*overrides, f"output.dir={work / 'chained'}"])
    ref = chained(cfg, work)
    job = ["ray_jobs/pipeline.py", "--config", args.config, *overrides, f"output.dir={work / 'pipeline'}", f"serve.port={free_port()}"]
    fresh = timed(job, work / "pipeline.log")
    stages = json.loads((work / "pipeline" / "summary.json").read_text())["stages"]
    rerun = timed(job, work / "pipeline_rerun.log")
    result = {"config": args.config, "model": model, "chained_s": {k: round(v, 1) for k, v in ref.items()},
              "chained_total_s": round(sum(ref.values()), 1), "pipeline_s": round(fresh, 1),
              "pipeline_stage_s": {k: v["seconds"] for k, v in stages.items()}, "pipeline_rerun_s": round(rerun, 1),
              "ratio_pipeline_vs_chained": round(fresh / sum(ref.values()), 3), "work": str(work)}
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    with open(args.results, "a") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
