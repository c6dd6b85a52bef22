"""Which config model a YAML under ``configs/<job>/`` belongs to (used by tests and tooling)."""

from __future__ import annotations

import importlib
from pathlib import Path

from pydantic import BaseModel

# "<folder>/<file-name prefix>" under configs/ -> "module:Model"; the longest match wins.
CONFIG_MODELS: dict[str, str] = {
    "generate/": "medforge.datagen.config:InstructionJobConfig",
    "contexts/": "medforge.contexts.config:ContextJobConfig",
    "finetune/llm_": "medforge.train.config:LLMFinetuneConfig",
    "finetune/slm_": "medforge.train.config:SLMFinetuneConfig",
    "evaluate/": "medforge.eval.config:EvalConfig",
    "evaluate/mc_": "medforge.eval.config:MCEvalConfig",
    "pipeline/": "medforge.pipeline.config:PipelineConfig",
}


def config_model_for(path: str | Path) -> type[BaseModel]:
    p = Path(path)
    key = f"{p.parent.name}/{p.name}"
    matches = [prefix for prefix in CONFIG_MODELS if key.startswith(prefix)]
    if not matches:
        raise KeyError(f"no config model registered for configs/{key}; add it to CONFIG_MODELS in {__name__}")
    module, name = CONFIG_MODELS[max(matches, key=len)].split(":")
    return getattr(importlib.import_module(module), name)
