"""Pieces shared by the LLM and SLM fine-tuning loops: logger, plots, checks, throughput."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

from medforge.cluster.preflight import module_problems, preflight
from medforge.config.base import ConfigError
from medforge.finetune.config import LoggerSection, ScalingSection
from medforge.finetune.placement import train_demand, train_worker_bundle

logger = logging.getLogger(__name__)

# Dense bf16 peak (no sparsity), FLOP/s, matched on the device name torch reports.
PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "H800": 989e12,
    "GH200": 989e12,
    "A100": 312e12,
    "A800": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
    "L4": 121e12,
    "V100": 125e12,
}


def peak_flops(device_name: str) -> float | None:
    """bf16 peak of a known card, else None (MFU is then not reported)."""
    name = device_name.upper()
    for key in sorted(PEAK_BF16_FLOPS, key=len, reverse=True):
        if key in name:
            peak = PEAK_BF16_FLOPS[key]
            if key == "H100" and "PCIE" in name:
                return 756e12
            return peak
    return None


def train_flops_per_token(n_params: int, n_layers: int, hidden: int, seq_len: int) -> float:
    """6N for the matmuls plus the attention scores (PaLM appendix B): 12 * L * H * S."""
    return 6.0 * n_params + 12.0 * n_layers * hidden * seq_len


class MetricsLogger:
    """One sink for metrics, chosen by ``logger.kind``; a no-op on ranks other than 0."""

    def __init__(self, cfg: LoggerSection, run_dir: str | Path, run_name: str, rank: int = 0, config: dict | None = None):
        self.cfg, self.rank, self.run_name = cfg, rank, run_name
        self._file = None
        self._backend: Any = None
        if rank != 0:
            return
        if cfg.kind == "jsonl":
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            self._file = open(Path(run_dir) / "metrics.jsonl", "a", encoding="utf-8")
        elif cfg.kind == "wandb":
            try:
                import wandb
            except ImportError as exc:
                raise ImportError("logger.kind=wandb needs `pip install wandb`") from exc
            self._backend = wandb.init(project=cfg.project, name=run_name, config=config, resume="allow")
        elif cfg.kind == "mlflow":
            try:
                import mlflow
            except ImportError as exc:
                raise ImportError("logger.kind=mlflow needs `pip install mlflow`") from exc
            mlflow.set_experiment(cfg.project)
            self._backend = mlflow.start_run(run_name=run_name)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self.rank != 0:
            return
        shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        logger.info("[%s] step %d %s", self.run_name, step, shown)
        if self._file is not None:
            self._file.write(json.dumps({"step": step, **metrics}) + "\n")
            self._file.flush()
        elif self.cfg.kind == "wandb":
            import wandb

            wandb.log(metrics, step=step)
        elif self.cfg.kind == "mlflow":
            import mlflow

            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}, step=step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self.rank == 0 and self.cfg.kind == "wandb":
            import wandb

            wandb.finish()
        if self.rank == 0 and self.cfg.kind == "mlflow":
            import mlflow

            mlflow.end_run()


def plot_loss_curve(history: list[dict[str, Any]], path: str | Path, title: str) -> Path:
    """PNG of train loss (and eval loss / dev accuracy where present) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, style in (("train_loss", "-"), ("eval_loss", "o-")):
        pts = [(h["step"], h[key]) for h in history if h.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), style, label=key)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    accs = [(h["step"], h["dev_accuracy"]) for h in history if h.get("dev_accuracy") is not None]
    if accs:
        ax2 = ax.twinx()
        ax2.plot(*zip(*accs, strict=True), "s--", color="tab:green", label="dev_accuracy")
        ax2.set_ylabel("dev accuracy")
        ax2.legend(loc="upper right")
    ax.legend(loc="upper left" if accs else "best")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def cluster_capacity_problems(scaling: ScalingSection, storage: dict[str, str | None] | None = None,
                              runs: int = 1) -> list[str]:
    """Workers the (already joined) cluster can never hold, and unusable storage, as problem lines.

    Checked against what the cluster can grow to (autoscaler node types and their max_workers),
    not what is up now: an 8-GPU job on an autoscaled cluster at rest is fine. ``runs``: Ray Train
    runs whose workers must be held at once.
    """
    problems = module_problems({m: "pip install -e '.[train]' (deepspeed==0.19.8, peft==0.21.2) in the cluster image "
                                   "(cluster.yaml setup_commands, deploy/Dockerfile)" for m in ("deepspeed", "peft")})
    try:
        preflight("fine-tuning", [train_demand(scaling, runs)], storage)
    except ConfigError as exc:
        return exc.problems + problems
    return problems


def ray_scaling_config(scaling: ScalingSection):
    """Ray Train's ``ScalingConfig`` asking for exactly the declared worker (CPUs, GPU, accelerator, memory)."""
    from ray.train import ScalingConfig

    per_worker = {k: v for k, v in train_worker_bundle(scaling).items() if not k.startswith("accelerator_type:")}
    return ScalingConfig(num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
                         resources_per_worker=per_worker, accelerator_type=scaling.accelerator_type)


def model_problems(model: str, field: str = "model") -> list[str]:
    """A base model that cannot be found (local folder without config.json, or an unreachable hub id)."""
    p = Path(model).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            return [f"{field} = {model!r}: folder has no config.json; fix: point it at a Hugging Face model folder"]
        return []
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        return [f"{field} = {model!r}: no such folder; fix: build it (medforge make-tiny-models) or fix the path"]
    try:
        from transformers import AutoConfig

        AutoConfig.from_pretrained(model)
    except Exception as exc:  # noqa: BLE001 - any failure means the model is unusable
        return [f"{field} = {model!r}: not a local folder and not loadable from the hub ({type(exc).__name__}); fix: use a local path or a valid hub id"]
    return []


def export_folder(local: str | Path, dest: str, overwrite: bool) -> None:
    """Copy a finished local folder to ``dest`` (a local path or a cloud URI)."""
    if "://" in dest:
        import pyarrow.fs

        pyarrow.fs.copy_files(str(local), dest)
        return
    dest_p = Path(dest)
    if dest_p.exists():
        if not overwrite and any(dest_p.iterdir()):
            raise FileExistsError(f"{dest} exists and is not empty; set output.overwrite=true")
        shutil.rmtree(dest_p)
    dest_p.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(local, dest_p)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def worker_env() -> dict[str, str]:
    """Environment for Ray Train workers: quiet tokenizers, one thread each on small machines."""
    env = {"TOKENIZERS_PARALLELISM": "false"}
    if (os.cpu_count() or 1) <= 4:
        env["OMP_NUM_THREADS"] = "1"
    return env


def full_state_dict(engine: Any) -> dict[str, Any] | None:
    """The whole model's weights on rank 0, on CPU (ZeRO-3: gathered; collective on every rank).

    Must be called on every rank; returns ``None`` on ranks other than 0.
    """
    import ray.train

    rank = ray.train.get_context().get_world_rank()
    if engine.zero_optimization_stage() == 3:
        sd = engine._zero3_consolidated_16bit_state_dict()
    else:
        sd = engine.module.state_dict() if rank == 0 else None
    if rank != 0:
        return None
    return {k: v.detach().cpu() for k, v in sd.items()}
