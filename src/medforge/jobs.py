"""The one way every job starts: parse ``--config`` + dotted overrides, validate, log, join Ray, run.

Used by the scripts in ``ray_jobs/`` and by the ``medforge`` CLI, so both behave alike.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from medforge.config.base import ConfigError, JobConfig, dump_config, load_config
from medforge.engines.breaker import EXIT_INCOMPLETE, circuit_message
from medforge.results import JobResult
from medforge.runtime import init_ray

logger = logging.getLogger(__name__)


def parse_job_args(argv: list[str], prog: str, description: str, example: str) -> tuple[str, list[str]]:
    """``--config PATH`` plus ``key.path=value`` overrides; any other flag is an error naming it."""
    parser = argparse.ArgumentParser(
        prog=prog, description=f"{description} Extra arguments are dotted config overrides, e.g. {example}."
    )
    parser.add_argument("--config", required=True, help="YAML config under configs/")
    args, overrides = parser.parse_known_args(argv)
    stray = [o for o in overrides if o.startswith("-")]
    if stray:
        parser.error(f"unknown flag(s) {stray}; only --config and key=value overrides are accepted")
    return args.config, overrides


def warn_if_tiny(model: str, warning: str) -> None:
    """Log ``warning`` when the job's model is one of the tiny RANDOM test models (its output is noise)."""
    if "tiny" in model.lower():
        logger.warning(warning)


def run_job(
    argv: list[str],
    *,
    prog: str,
    model: type[JobConfig],
    description: str,
    example: str,
    run: Callable[[Any], JobResult],
    needs_ray: bool = True,
) -> int:
    """Validate the whole config before Ray starts, then run ``run(cfg)`` and print its result as JSON.

    ``needs_ray=False``: a job that runs in the driver alone; no cluster is joined or started.

    Returns 2 (with every problem on stderr) for a bad config, 3 when the job stopped on its
    failure breaker or finished with rows still pending (the message says what and how to resume;
    docs/reliability.md), 0 on success.
    """
    config_path, overrides = parse_job_args(argv, prog, description, example)
    try:
        cfg = load_config(model, config_path, overrides)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logger.info("resolved config:\n%s", dump_config(cfg))
    if needs_ray:
        init_ray(cfg.ray_address, cfg.ray_num_cpus, cfg.ray_object_store_mib)

    try:
        result = run(cfg)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except Exception as exc:
        # The breaker may trip in the driver or inside a Ray actor (then it arrives wrapped).
        message = circuit_message(exc)
        if message is None:
            raise
        logger.error(message)
        print(message, file=sys.stderr)
        return EXIT_INCOMPLETE
    print(result.summary_json())
    if result.incomplete:
        print(f"{prog}: incomplete: {result.incomplete}", file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0
