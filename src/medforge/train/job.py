"""Entry points shared by ``ray_jobs/finetune_{llm,slm}.py`` and ``medforge finetune-{llm,slm}``."""

from __future__ import annotations

from typing import Any

from medforge.jobs import run_job
from medforge.train.config import LLMFinetuneConfig, SLMFinetuneConfig
from medforge.train.llm import run_llm_finetune
from medforge.train.slm import run_slm_finetune


def _run_llm(cfg: LLMFinetuneConfig) -> dict[str, Any]:
    return run_llm_finetune(cfg)


def _run_slm(cfg: SLMFinetuneConfig) -> dict[str, Any]:
    return run_slm_finetune(cfg)


def main_llm(argv: list[str], prog: str = "finetune_llm") -> int:
    return run_job(argv, prog=prog, model=LLMFinetuneConfig, run=_run_llm,
                   description="Instruction-tune a causal LM on Ray Train + DeepSpeed.",
                   example="optim.lr=1e-5 data.packing=true")


def main_slm(argv: list[str], prog: str = "finetune_slm") -> int:
    return run_job(argv, prog=prog, model=SLMFinetuneConfig, run=_run_slm,
                   description="Multiple-choice fine-tuning of a small encoder.",
                   example="data.use_context=false data.few_shot=100")


def cli_llm(argv: list[str]) -> int:
    return main_llm(argv, prog="medforge finetune-llm")


def cli_slm(argv: list[str]) -> int:
    return main_slm(argv, prog="medforge finetune-slm")
