"""Entry points shared by ``ray_jobs/evaluate*.py`` and ``medforge evaluate`` / ``medforge evaluate-mc``."""

from __future__ import annotations

from typing import Any

from medforge.evaluate.config import EvaluateConfig, EvaluateMCConfig
from medforge.evaluate.freeform import run_evaluate
from medforge.evaluate.mc import run_evaluate_mc
from medforge.jobs import run_job


def _run(cfg: EvaluateConfig) -> dict[str, Any]:
    report = run_evaluate(cfg)
    return {"output_dir": cfg.output.dir, "judge_calls": report["judge_calls"],
            **{ref: {k: r[k] for k in ("win_rate", "ci95", "lc_win_rate", "n_scored")} for ref, r in report["references"].items()}}


def _run_mc(cfg: EvaluateMCConfig) -> dict[str, Any]:
    report = run_evaluate_mc(cfg)
    return {"output_dir": cfg.output_dir, "results": [{k: r[k] for k in ("model", "dataset", "context", "accuracy", "n_scored")}
                                                       for r in report["results"]], "few_shot": report["few_shot"]}


def main(argv: list[str], prog: str = "evaluate") -> int:
    # Ray is joined only when a model or judge call is to be made (a fully cached rerun needs none)
    return run_job(argv, prog=prog, model=EvaluateConfig, run=_run, needs_ray=False,
                   description="Judge a model's answers against references, both orders, with CIs and length control.",
                   example="data.max_items=10 model.sampling.max_tokens=256")


def main_mc(argv: list[str], prog: str = "evaluate_mc") -> int:
    return run_job(argv, prog=prog, model=EvaluateMCConfig, run=_run_mc, needs_ray=False,
                   description="Multiple-choice accuracy of exported SLMs with/without context, and few-shot curves.",
                   example="batch_size=64 device=cpu")


def cli_main(argv: list[str]) -> int:
    return main(argv, prog="medforge evaluate")


def cli_mc(argv: list[str]) -> int:
    return main_mc(argv, prog="medforge evaluate-mc")
