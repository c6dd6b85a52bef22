"""The jobs, each under one name, and which config model a YAML under ``configs/`` belongs to.

A job's name is the same everywhere: ``medforge <name>``, ``ray_jobs/<name>.py``,
``configs/<name>/``, the pipeline stage of that name, and in its package the config class
``<Name>Config`` and the run function ``run_<name>`` (``-`` becomes ``_``; ``finetune-mc``:
``FinetuneMCConfig``, ``run_finetune_mc``). The multiple-choice variants ``finetune-mc`` and
``evaluate-mc`` live in the package of the job they vary (``medforge.finetune``,
``medforge.evaluate``). ``tests/unit/config/test_job_names.py`` checks all of it.

The names before 0.2 (``generate``, ``finetune``, ``configs/finetune/*`` ...)
keep working for one release with a deprecation message naming the new one: ``OLD_COMMANDS``,
``OLD_CONFIG_PATHS``.

Pure data and string work: importing this module imports no job.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    name: str  # the CLI subcommand
    package: str  # the package that holds it
    config: str | None  # "module:Class" (None: serve reads a Ray Serve file, see below)
    run: str  # "module:function"
    cli: str  # "module:function" taking argv
    help: str
    stage: bool = False  # a stage of the pipeline job

    @property
    def snake(self) -> str:
        return self.name.replace("-", "_")

    @property
    def script(self) -> str:
        return f"ray_jobs/{self.snake}.py"

    @property
    def configs(self) -> str:
        return f"configs/{self.snake}/"


JOBS: tuple[Job, ...] = (
    Job("generate", "medforge.generate", "medforge.generate.config:GenerateConfig",
        "medforge.generate.pipeline:run_generate", "medforge.generate.job:cli_main",
        "AlpaCare-style task + response synthesis", stage=True),
    Job("contexts", "medforge.contexts", "medforge.contexts.config:ContextsConfig",
        "medforge.contexts.pipeline:run_contexts", "medforge.contexts.job:cli_main",
        "privacy-preserving contextual prompting (keywords -> LLM contexts)"),
    Job("finetune", "medforge.finetune", "medforge.finetune.config:FinetuneConfig",
        "medforge.finetune.llm:run_finetune", "medforge.finetune.job:cli_main",
        "instruction-tune a causal LM (Ray Train + DeepSpeed ZeRO)", stage=True),
    Job("finetune-mc", "medforge.finetune", "medforge.finetune.config:FinetuneMCConfig",
        "medforge.finetune.slm:run_finetune_mc", "medforge.finetune.job:cli_mc",
        "multiple-choice fine-tuning of a small encoder, with/without context"),
    Job("evaluate", "medforge.evaluate", "medforge.evaluate.config:EvaluateConfig",
        "medforge.evaluate.freeform:run_evaluate", "medforge.evaluate.job:cli_main",
        "LLM-as-judge win rates vs references (both orders, CIs, length control)", stage=True),
    Job("evaluate-mc", "medforge.evaluate", "medforge.evaluate.config:EvaluateMCConfig",
        "medforge.evaluate.mc:run_evaluate_mc", "medforge.evaluate.job:cli_mc",
        "multiple-choice accuracy of exported SLMs, with/without context; few-shot curves"),
    Job("pipeline", "medforge.pipeline", "medforge.pipeline.config:PipelineConfig",
        "medforge.pipeline.runner:run_pipeline", "medforge.pipeline.job:cli_main",
        "the whole loop as one job: generate -> finetune -> evaluate vs base -> serve"),
    # A serve config is a Ray Serve file (Ray's own schema, so `serve run` / `serve deploy` take it
    # too); each application's args validate as medforge.serve.config.LLMServeConfig or QAServeConfig.
    Job("serve", "medforge.serve", None, "medforge.serve.cli:run_serve", "medforge.serve.cli:cli_main",
        "serve the trained models on Ray Serve (OpenAI-compatible LLM, multi-LoRA, /v1/medqa)", stage=True),
)
JOB_BY_NAME = {job.name: job for job in JOBS}

# The pre-0.2 names below stay as they are when the project renames (medforge-old-names).
# old subcommand -> new one (accepted, with a deprecation message, until 0.3)
OLD_COMMANDS = {
    "generate-instructions": "generate",
    "generate-contexts": "contexts",
    "finetune-llm": "finetune",
    "finetune-slm": "finetune-mc",
}
# old ray_jobs/ script -> new one (the old files are thin shims until 0.3)
OLD_SCRIPTS = {
    "ray_jobs/generate_instructions.py": "ray_jobs/generate.py",
    "ray_jobs/generate_contexts.py": "ray_jobs/contexts.py",
    "ray_jobs/finetune_llm.py": "ray_jobs/finetune.py",
    "ray_jobs/finetune_slm.py": "ray_jobs/finetune_mc.py",
}
# old config path (a prefix, from the repository root) -> new one
OLD_CONFIG_PATHS = {
    "configs/finetune/llm_": "configs/finetune/",
    "configs/finetune/slm_": "configs/finetune_mc/",
    "configs/evaluate/mc_": "configs/evaluate_mc/",
    "serving/": "configs/serve/",
}
REMOVED_IN = "0.3"


def deprecated(old: str, new: str) -> str:
    return f"{old} is deprecated and will be removed in medforge {REMOVED_IN}: use {new}"


def renamed_config_path(path: str | Path) -> Path | None:
    """The new path of a config named by its pre-0.2 path (``configs/finetune/local_tiny.yaml``
    -> ``configs/finetune/local_tiny.yaml``); None when ``path`` is not such a path."""
    text = Path(path).as_posix()
    for old, new in OLD_CONFIG_PATHS.items():
        at = text.find(old)
        if at == -1 or (at > 0 and text[at - 1] != "/"):
            continue
        return Path(text[:at] + new + text[at + len(old):])
    return None


def resolve_config_path(path: str | Path) -> Path:
    """``path``, or its new name (with a deprecation warning) when only the pre-0.2 path is given."""
    p = Path(path)
    if p.exists():
        return p
    new = renamed_config_path(p)
    if new is not None and new.exists():
        logger.warning(deprecated(f"config path {p}", str(new)))
        return new
    return p


def config_model_for(path: str | Path) -> type[BaseModel]:
    """The config class of a YAML under ``configs/<job>/`` (the folder names the job)."""
    p = renamed_config_path(path) or Path(path)
    job = JOB_BY_NAME.get(p.parent.name.replace("_", "-"))
    if job is None or job.config is None:
        raise KeyError(f"no job config model for configs/{p.parent.name}/{p.name}: the folder must be one of "
                       f"{', '.join(j.configs for j in JOBS if j.config)} (medforge.config.registry.JOBS)")
    module, name = job.config.split(":")
    return getattr(importlib.import_module(module), name)
