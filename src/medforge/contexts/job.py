"""Entry point shared by ``ray_jobs/generate_contexts.py`` and ``medforge generate-contexts``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from medforge.config.base import ConfigError, dump_config, load_config
from medforge.contexts.config import ContextJobConfig

logger = logging.getLogger(__name__)

NOISE_WARNING = (
    "NOTE: the teacher is a tiny RANDOM model built offline; its contexts are noise (most rows are quarantined "
    "as unparseable). They only show that the pipeline ran. Use configs/contexts/openai_api.yaml or "
    "configs/contexts/cluster_llama3_70b.yaml for real data."
)


def parse_args(argv: list[str], prog: str) -> tuple[str, list[str]]:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Privacy-preserving contextual prompting (Zhang et al., ICLR 2024). Extra arguments are dotted "
        "config overrides, e.g. input.max_rows=100 output.chunk_rows=50.",
    )
    parser.add_argument("--config", required=True, help="YAML config, e.g. configs/contexts/local_tiny.yaml")
    args, overrides = parser.parse_known_args(argv)
    stray = [o for o in overrides if o.startswith("-")]
    if stray:
        parser.error(f"unknown flag(s) {stray}; only --config and key=value overrides are accepted")
    return args.config, overrides


def main(argv: list[str], prog: str = "generate_contexts") -> int:
    config_path, overrides = parse_args(argv, prog)
    try:
        cfg = load_config(ContextJobConfig, config_path, overrides)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logger.info("resolved config:\n%s", dump_config(cfg))
    if "tiny" in cfg.teacher.model.lower():
        logger.warning(NOISE_WARNING)

    from medforge.contexts.pipeline import run_context_generation
    from medforge.runtime import init_ray

    init_ray(cfg.ray_address, cfg.ray_num_cpus)
    summary = run_context_generation(cfg)
    print(json.dumps(summary, indent=2))
    return 0


def cli_main(argv: list[str]) -> int:
    return main(argv, prog="medforge generate-contexts")
