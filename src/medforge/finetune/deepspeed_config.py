"""The DeepSpeed JSON: generated from our config, or a user's file checked against it.

Ray Train gives every worker one process; DeepSpeed is told the per-worker micro batch and the
accumulation steps and derives ``train_batch_size = micro * accum * world``. A user file that
says otherwise would silently train with a different effective batch, so it is rejected.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from medforge.finetune.config import DeepSpeedSection, OptimSection

logger = logging.getLogger(__name__)

_SCHEDULERS = {"cosine": "WarmupCosineLR", "linear": "WarmupDecayLR", "constant": "WarmupLR"}


def scheduler_block(optim: OptimSection, total_steps: int) -> dict[str, Any]:
    """DeepSpeed scheduler for ``optim.scheduler`` over ``total_steps`` optimizer steps."""
    # DeepSpeed rejects warmup_num_steps=0; one step of warmup is harmless.
    warmup = max(int(round(optim.warmup_ratio * total_steps)), 1)
    total = max(total_steps, 1)
    if optim.scheduler == "cosine":
        params: dict[str, Any] = {
            "total_num_steps": total,
            "warmup_num_steps": warmup,
            "warmup_min_ratio": 0.0,
            "cos_min_ratio": 0.0,
            "warmup_type": "linear",
        }
    elif optim.scheduler == "linear":
        params = {
            "total_num_steps": total,
            "warmup_min_lr": 0.0,
            "warmup_max_lr": optim.lr,
            "warmup_num_steps": warmup,
            "warmup_type": "linear",
        }
    else:
        params = {"warmup_min_lr": 0.0, "warmup_max_lr": optim.lr, "warmup_num_steps": warmup, "warmup_type": "linear"}
    return {"type": _SCHEDULERS[optim.scheduler], "params": params}


def build_deepspeed_config(
    ds: DeepSpeedSection, optim: OptimSection, world_size: int, use_gpu: bool, total_steps: int
) -> dict[str, Any]:
    """The DeepSpeed config our settings imply.

    Precision is bf16 on GPU and fp32 on CPU (DeepSpeed's CPU accelerator has no fast bf16 path on
    AVX2 machines). Offload is GPU-only: on CPU workers the tensors already live in CPU memory.
    """
    offload_opt = ds.offload_optimizer and use_gpu
    offload_par = ds.offload_params and use_gpu
    if (ds.offload_optimizer or ds.offload_params) and not use_gpu:
        logger.warning("CPU offload requested on CPU workers: ignored (tensors already live in CPU memory)")
    zero: dict[str, Any] = {
        "stage": ds.zero_stage,
        "overlap_comm": use_gpu,
        "contiguous_gradients": True,
        "reduce_bucket_size": 5e7,
    }
    if ds.zero_stage == 3:
        zero.update(
            {
                "stage3_gather_16bit_weights_on_model_save": True,
                "stage3_param_persistence_threshold": 1e4,
                "stage3_prefetch_bucket_size": 5e7,
            }
        )
    else:
        zero["allgather_bucket_size"] = 5e7
    if offload_opt:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if offload_par:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        "train_micro_batch_size_per_gpu": optim.micro_batch_size,
        "gradient_accumulation_steps": optim.grad_accum_steps,
        "train_batch_size": optim.micro_batch_size * optim.grad_accum_steps * world_size,
        "gradient_clipping": ds.gradient_clipping,
        "bf16": {"enabled": use_gpu},
        "fp16": {"enabled": False},
        "zero_optimization": zero,
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": optim.lr,
                "betas": list(optim.betas),
                "eps": optim.eps,
                "weight_decay": optim.weight_decay,
                # DeepSpeed's fused/CPU Adam needs a JIT build; plain torch AdamW is fine unless offloading.
                "torch_adam": not offload_opt,
            },
        },
        "scheduler": scheduler_block(optim, total_steps),
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def _resolve_auto(user: Any, ours: Any) -> Any:
    """Replace every ``"auto"`` in ``user`` by our value at the same place."""
    if user == "auto":
        return ours
    if isinstance(user, dict):
        ours = ours if isinstance(ours, dict) else {}
        return {k: _resolve_auto(v, ours.get(k)) for k, v in user.items()}
    return user


def merge_user_deepspeed_config(user: dict[str, Any], ours: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Resolve ``auto`` in a user's DeepSpeed config and list its contradictions with ours.

    Returns:
        ``(config, problems)``; ``problems`` is empty when the file agrees with our config.
    """
    cfg = _resolve_auto(user, ours)
    problems: list[str] = []
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size"):
        if key in cfg and cfg[key] != ours[key]:
            problems.append(
                f"deepspeed.config_path: {key}={cfg[key]!r} contradicts ours ({ours[key]!r}, from optim.micro_batch_size, "
                f"optim.grad_accum_steps and scaling.num_workers); fix: set it to \"auto\" or change our config"
            )
    stage = (cfg.get("zero_optimization") or {}).get("stage")
    if stage is not None and stage != ours["zero_optimization"]["stage"]:
        problems.append(
            f"deepspeed.config_path: zero_optimization.stage={stage!r} contradicts deepspeed.zero_stage="
            f"{ours['zero_optimization']['stage']}; fix: make them agree"
        )
    for prec in ("bf16", "fp16"):
        user_on = bool((cfg.get(prec) or {}).get("enabled", False))
        if user_on and not ours[prec]["enabled"]:
            problems.append(
                f"deepspeed.config_path: {prec}.enabled=true but this run is "
                f"{'bf16' if ours['bf16']['enabled'] else 'fp32 (CPU workers)'}; fix: set it to \"auto\""
            )
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size", "optimizer", "scheduler"):
        cfg.setdefault(key, ours[key])
    return cfg, problems


def resolve_deepspeed_config(
    ds: DeepSpeedSection, optim: OptimSection, world_size: int, use_gpu: bool, total_steps: int
) -> tuple[dict[str, Any], list[str]]:
    """Our generated config, or the user's file (``ds.config_path``) checked against it."""
    ours = build_deepspeed_config(ds, optim, world_size, use_gpu, total_steps)
    if not ds.config_path:
        return ours, []
    path = Path(ds.config_path)
    if not path.is_file():
        return ours, [f"deepspeed.config_path = {str(path)!r}: file not found; fix: point it at a DeepSpeed JSON"]
    try:
        user = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        return ours, [f"deepspeed.config_path = {str(path)!r}: not valid JSON ({exc})"]
    return merge_user_deepspeed_config(user, ours)
