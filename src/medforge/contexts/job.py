"""Entry point shared by ``ray_jobs/contexts.py`` and ``medforge contexts``."""

from __future__ import annotations

from medforge.contexts.config import ContextsConfig
from medforge.contexts.pipeline import ContextsResult, run_contexts
from medforge.jobs import run_job, warn_if_tiny

NOISE_WARNING = (
    "NOTE: the teacher is a tiny RANDOM model built offline; its contexts are noise (most rows are quarantined "
    "as unparseable). They only show that the pipeline ran. Use configs/contexts/openai_api.yaml or "
    "configs/contexts/cluster_llama3_70b.yaml for real data."
)


def _run(cfg: ContextsConfig) -> ContextsResult:
    warn_if_tiny(cfg.engine.model, NOISE_WARNING)
    return run_contexts(cfg)


def main(argv: list[str], prog: str = "contexts") -> int:
    return run_job(argv, prog=prog, model=ContextsConfig, run=_run,
                   description="Privacy-preserving contextual prompting (Zhang et al., ICLR 2024).",
                   example="input.max_rows=100 output.chunk_rows=50")


def cli_main(argv: list[str]) -> int:
    return main(argv, prog="medforge contexts")
