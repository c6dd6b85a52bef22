"""Entry points shared by ``ray_jobs/finetune{,_mc}.py`` and ``medforge finetune`` / ``medforge finetune-mc``."""

from __future__ import annotations

from medforge.jobs import run_job
from medforge.finetune.config import FinetuneConfig, FinetuneMCConfig
from medforge.finetune.llm import FinetuneResult, run_finetune
from medforge.finetune.slm import FinetuneMCResult, run_finetune_mc


def _run(cfg: FinetuneConfig) -> FinetuneResult:
    return run_finetune(cfg)


def _run_mc(cfg: FinetuneMCConfig) -> FinetuneMCResult:
    return run_finetune_mc(cfg)


def main(argv: list[str], prog: str = "finetune") -> int:
    return run_job(argv, prog=prog, model=FinetuneConfig, run=_run,
                   description="Instruction-tune a causal LM on Ray Train + DeepSpeed.",
                   example="optim.lr=1e-5 data.packing=true")


def main_mc(argv: list[str], prog: str = "finetune_mc") -> int:
    return run_job(argv, prog=prog, model=FinetuneMCConfig, run=_run_mc,
                   description="Multiple-choice fine-tuning of a small encoder.",
                   example="data.use_context=false data.few_shot=100")


def cli_main(argv: list[str]) -> int:
    return main(argv, prog="medforge finetune")


def cli_mc(argv: list[str]) -> int:
    return main_mc(argv, prog="medforge finetune-mc")
