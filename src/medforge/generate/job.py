"""Entry point shared by ``ray_jobs/generate.py`` and ``medforge generate``."""

from __future__ import annotations

from medforge.generate.config import GenerateConfig
from medforge.generate.pipeline import GenerateResult, run_generate
from medforge.jobs import run_job, warn_if_tiny

NOISE_WARNING = (
    "NOTE: the teacher is a tiny RANDOM model built offline; the tasks and answers it writes are noise. "
    "They only show that the real pipeline ran. For real data set engine.model to a real checkpoint "
    "(e.g. configs/generate/cluster_llama3_70b.yaml) or use an API teacher (configs/generate/openai_api.yaml)."
)


def _run(cfg: GenerateConfig) -> GenerateResult:
    warn_if_tiny(cfg.engine.model, NOISE_WARNING)
    return run_generate(cfg)


def main(argv: list[str], prog: str = "generate") -> int:
    return run_job(argv, prog=prog, model=GenerateConfig, run=_run,
                   description="AlpaCare-style instruction synthesis.",
                   example="budget.target_tasks=100 engine.concurrency=[1,4]")


def cli_main(argv: list[str]) -> int:
    return main(argv, prog="medforge generate")
