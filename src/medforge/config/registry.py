"""Which config model a YAML under ``configs/<job>/`` belongs to (used by tests and tooling)."""

from __future__ import annotations

import importlib
from pathlib import Path

from pydantic import BaseModel

# configs/<folder>/*.yaml -> "module:Model"
CONFIG_MODELS: dict[str, str] = {
    "generate": "medforge.datagen.config:InstructionJobConfig",
}


def config_model_for(path: str | Path) -> type[BaseModel]:
    folder = Path(path).parent.name
    if folder not in CONFIG_MODELS:
        raise KeyError(f"no config model registered for configs/{folder}/; add it to CONFIG_MODELS")
    module, name = CONFIG_MODELS[folder].split(":")
    return getattr(importlib.import_module(module), name)
