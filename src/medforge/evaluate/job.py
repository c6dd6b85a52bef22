"""Entry points shared by ``ray_jobs/evaluate*.py`` and ``medforge evaluate`` / ``medforge evaluate-mc``."""

from __future__ import annotations

from medforge.evaluate.config import EvaluateConfig, EvaluateMCConfig
from medforge.evaluate.freeform import EvaluateResult, run_evaluate
from medforge.evaluate.mc import EvaluateMCResult, run_evaluate_mc
from medforge.jobs import run_job


def _run(cfg: EvaluateConfig) -> EvaluateResult:
    return run_evaluate(cfg)


def _run_mc(cfg: EvaluateMCConfig) -> EvaluateMCResult:
    return run_evaluate_mc(cfg)


def main(argv: list[str], prog: str = "evaluate") -> int:
    # Ray is joined only when a model or judge call is to be made (a fully cached rerun needs none)
    return run_job(argv, prog=prog, model=EvaluateConfig, run=_run, needs_ray=False,
                   description="Judge a model's answers against references, both orders, with CIs and length control.",
                   example="data.max_items=10 answers.sampling.max_tokens=256")


def main_mc(argv: list[str], prog: str = "evaluate_mc") -> int:
    return run_job(argv, prog=prog, model=EvaluateMCConfig, run=_run_mc, needs_ray=False,
                   description="Multiple-choice accuracy of exported SLMs with/without context, and few-shot curves.",
                   example="batch_size=64 device=cpu")


def cli_main(argv: list[str]) -> int:
    return main(argv, prog="medforge evaluate")


def cli_mc(argv: list[str]) -> int:
    return main_mc(argv, prog="medforge evaluate-mc")
