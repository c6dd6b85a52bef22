"""Entry points shared by ``ray_jobs/finetune_{llm,slm}.py`` and ``medforge finetune-{llm,slm}``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from medforge.config.base import ConfigError, dump_config, load_config

logger = logging.getLogger(__name__)


def parse_args(argv: list[str], prog: str, description: str, example: str) -> tuple[str, list[str]]:
    parser = argparse.ArgumentParser(
        prog=prog, description=f"{description} Extra arguments are dotted config overrides, e.g. {example}."
    )
    parser.add_argument("--config", required=True, help="YAML config under configs/finetune/")
    args, overrides = parser.parse_known_args(argv)
    stray = [o for o in overrides if o.startswith("-")]
    if stray:
        parser.error(f"unknown flag(s) {stray}; only --config and key=value overrides are accepted")
    return args.config, overrides


def _run(argv: list[str], prog: str, kind: str) -> int:
    if kind == "llm":
        from medforge.train.config import LLMFinetuneConfig as Model

        desc, example = "Instruction-tune a causal LM on Ray Train + DeepSpeed.", "optim.lr=1e-5 data.packing=true"
    else:
        from medforge.train.config import SLMFinetuneConfig as Model

        desc, example = "Multiple-choice fine-tuning of a small encoder.", "data.use_context=false data.few_shot=100"
    config_path, overrides = parse_args(argv, prog, desc, example)
    try:
        cfg = load_config(Model, config_path, overrides)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logger.info("resolved config:\n%s", dump_config(cfg))

    from medforge.runtime import init_ray

    init_ray(cfg.ray_address, cfg.ray_num_cpus)
    try:
        if kind == "llm":
            from medforge.train.llm import run_llm_finetune

            summary = run_llm_finetune(cfg)
        else:
            from medforge.train.slm import run_slm_finetune

            summary = run_slm_finetune(cfg)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0


def main_llm(argv: list[str], prog: str = "finetune_llm") -> int:
    return _run(argv, prog, "llm")


def main_slm(argv: list[str], prog: str = "finetune_slm") -> int:
    return _run(argv, prog, "slm")


def cli_llm(argv: list[str]) -> int:
    return main_llm(argv, prog="medforge finetune-llm")


def cli_slm(argv: list[str]) -> int:
    return main_slm(argv, prog="medforge finetune-slm")
