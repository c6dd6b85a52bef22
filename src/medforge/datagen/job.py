"""Entry point shared by ``ray_jobs/generate_instructions.py`` and ``medforge generate-instructions``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from medforge.config.base import ConfigError, dump_config, load_config
from medforge.datagen.config import InstructionJobConfig

logger = logging.getLogger(__name__)

NOISE_WARNING = (
    "NOTE: the teacher is a tiny RANDOM model built offline; the tasks and answers it writes are noise. "
    "They only show that the real pipeline ran. For real data set teacher.model to a real checkpoint "
    "(e.g. configs/generate/cluster_llama3_70b.yaml) or use an API teacher (configs/generate/openai_api.yaml)."
)


def parse_args(argv: list[str], prog: str) -> tuple[str, list[str]]:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="AlpaCare-style instruction synthesis. Extra arguments are dotted config overrides, "
        "e.g. budget.target_tasks=100 teacher.concurrency=[1,4].",
    )
    parser.add_argument("--config", required=True, help="YAML config, e.g. configs/generate/local_tiny.yaml")
    args, overrides = parser.parse_known_args(argv)
    stray = [o for o in overrides if o.startswith("-")]
    if stray:
        parser.error(f"unknown flag(s) {stray}; only --config and key=value overrides are accepted")
    return args.config, overrides


def main(argv: list[str], prog: str = "generate_instructions") -> int:
    config_path, overrides = parse_args(argv, prog)
    try:
        cfg = load_config(InstructionJobConfig, config_path, overrides)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logger.info("resolved config:\n%s", dump_config(cfg))
    if "tiny" in cfg.teacher.model.lower():
        logger.warning(NOISE_WARNING)

    from medforge.datagen.pipeline import run_instruction_synthesis
    from medforge.runtime import init_ray

    init_ray(cfg.ray_address, cfg.ray_num_cpus)
    summary = run_instruction_synthesis(cfg)
    print(json.dumps(summary, indent=2))
    return 0


def cli_main(argv: list[str]) -> int:
    return main(argv, prog="medforge generate-instructions")
