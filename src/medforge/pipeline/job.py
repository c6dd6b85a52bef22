"""``ray_jobs/pipeline.py`` / ``medforge pipeline``: the stages in order, cached, resumable, with lineage."""

from __future__ import annotations

import argparse
import logging
import sys

from medforge.config.base import ConfigError, dump_config, load_config
from medforge.engines.breaker import EXIT_INCOMPLETE, circuit_message
from medforge.pipeline.config import STAGES, PipelineConfig
from medforge.pipeline.runner import PipelineIncomplete, PipelineRefused, PipelineRun, run_pipeline, select_stages
from medforge.serve.cli import serve_until_interrupted

logger = logging.getLogger(__name__)


def parse_args(argv: list[str], prog: str) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog=prog, description="Seed tasks -> tasks and responses -> fine-tune -> evaluate tuned vs base -> serve, in one "
        "Ray cluster. Finished stages are skipped; a changed config reruns that stage and those after it. Extra "
        "arguments are dotted config overrides, e.g. finetune.optim.lr=1e-4.")
    parser.add_argument("--config", required=True, help="YAML under configs/pipeline/")
    parser.add_argument("--from", dest="from_stage", choices=STAGES, default=None,
                        help="run this stage and the ones after it (earlier ones must have finished for this config)")
    parser.add_argument("--only", choices=STAGES, default=None, help="run this stage alone")
    parser.add_argument("--rerun", action="store_true", help="ignore the cache of the selected stages: delete and redo them")
    parser.add_argument("--force-new", action="store_true",
                        help="run_dir holds another pipeline's run: delete it and start this one there")
    args, overrides = parser.parse_known_args(argv)
    stray = [o for o in overrides if o.startswith("-")]
    if stray:
        parser.error(f"unknown flag(s) {stray}; overrides are key.path=value")
    return args, overrides


def main(argv: list[str], prog: str = "medforge pipeline") -> int:
    """0 done, 2 refused before any stage ran (bad config, stages that do not fit), 3 a stage left work to do."""
    args, overrides = parse_args(argv, prog)
    try:
        cfg = load_config(PipelineConfig, args.config, overrides)
        selected = select_stages(args.from_stage, args.only)
        logger.info("resolved config:\n%s", dump_config(cfg))
        result, run = run_pipeline(cfg, selected, rerun=args.rerun, force_new=args.force_new, source=args.config)
    except (ConfigError, PipelineRefused) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except PipelineIncomplete as exc:
        print(f"{prog}: incomplete: {exc}; run the same command again to go on", file=sys.stderr)
        return EXIT_INCOMPLETE
    except Exception as exc:
        message = circuit_message(exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return EXIT_INCOMPLETE
    print(result.summary_json())
    print_how_to_query(run, prog)
    if run.serving and cfg.serve.keep_serving:
        wait_while_serving(run)
    return 0


def print_how_to_query(run: PipelineRun, prog: str) -> None:
    serve = (run.records.get("serve") or {}).get("outputs")
    if not serve:
        return
    print(f"\nthe tuned model is served as {serve['smoke']['model']!r} at {serve['base_url']} (OpenAI-compatible):")
    print(f"  {serve['how_to_query']}")
    key = run.key
    if key is not None and key.generated and run.serving:  # the endpoint stays up: its user needs the key this run made
        print(f"  export {key.env}=$(cat {key.file})  (a key made by this run; set ${key.env} or "
              "serve.llm.security.auth.api_keys_file before the run to choose it)")
    if not run.serving:
        print(f"  the endpoint was shut down at the end of this run (serve.keep_serving=false); to keep it up:\n"
              f"  {prog} --config ... --only serve serve.keep_serving=true")


def wait_while_serving(run: PipelineRun) -> None:
    """Keep a local cluster (and so the endpoint) alive until Ctrl-C; on a cluster the app stays deployed."""
    if not run.started_ray:
        print(f"the endpoint stays deployed on the cluster at {run.cfg.serve.base_url}; `serve shutdown` stops it")
        return
    print(f"serving at {run.cfg.serve.base_url} until Ctrl-C (key in {run.ensure_key().where})", flush=True)
    serve_until_interrupted()
    run.serving = False


def cli_main(argv: list[str]) -> int:
    return main(argv, prog="medforge pipeline")
