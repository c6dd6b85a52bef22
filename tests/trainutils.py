"""Helpers shared by the CPU integration and GPU training tests (importable as ``trainutils``:
``tests/`` is on ``sys.path`` because its conftest lives there)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medforge.finetune.config import FinetuneConfig


def llm_cfg(tmp_path: Path, model: Path, data: Path, **over: Any) -> FinetuneConfig:
    """A small SFT config (5 steps, ZeRO-3, 2 workers); ``over`` takes dotted keys."""
    base: dict[str, Any] = {
        "model": str(model),
        "data": {"path": str(data), "max_length": 192, "eval_fraction": 0.15},
        "optim": {"lr": 2e-3, "epochs": 1, "max_steps": 5, "micro_batch_size": 4, "warmup_ratio": 0.1},
        "deepspeed": {"zero_stage": 3},
        "scaling": {"num_workers": 2},
        "checkpoint": {"storage_path": str(tmp_path / "ckpt"), "name": "sft", "max_failures": 0},
        "logger": {"kind": "jsonl", "every_steps": 1},
        "output": {"dir": str(tmp_path / "export")},
    }
    for key, value in over.items():
        node = base
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return FinetuneConfig.model_validate(base)


def history(export: Path | str) -> list[dict[str, Any]]:
    return json.loads((Path(export) / "training_logs" / "history.json").read_text())
