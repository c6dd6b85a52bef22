"""Configs of the fine-tuning jobs (``ray_jobs/finetune.py`` and ``ray_jobs/finetune_mc.py``).

Both jobs share the sections that drive Ray Train and DeepSpeed (scaling, ZeRO, optimisation,
checkpoints, metrics logger). Everything here is validated before Ray starts; checks that need
the data or the cluster (empty dataset, worker count) live in ``medforge.finetune.preflight``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from medforge.cluster.resources import custom_resource_problems
from medforge.config.base import JobConfig, MedforgeModel, OutputBase


# Every local path in these configs is made absolute where the job's driver runs (on the cluster
# under ``ray job submit``): Ray Train workers do not run in the driver's working folder (a
# relative model path failed there as an invalid hub id), and Ray Train reads a relative storage
# path as a URI without a scheme ("URI has empty scheme"). The shipped local configs use
# relative paths, so the README's first training run crashed on both.
def _absolute_if_local(path: str | None) -> str | None:
    """A local path as an absolute path; a URI (``s3://``...) or ``None`` unchanged."""
    return path if path is None or "://" in path else str(Path(path).expanduser().absolute())


def _absolute_if_local_folder(model: str) -> str:
    """A base model that is an existing local folder, made absolute; a hub id unchanged."""
    folder = Path(model).expanduser()
    return str(folder.absolute()) if "://" not in model and folder.exists() else model


class ScalingSection(MedforgeModel):
    num_workers: int = Field(2, ge=1, description="Ray Train workers (one process each; one GPU each when use_gpu).")
    use_gpu: bool = Field(False, description="Give each worker a GPU (NCCL, bf16). False: CPU workers (gloo, fp32).")
    cpus_per_worker: float = Field(1.0, gt=0, description="Logical CPUs each worker reserves.")
    accelerator_type: str | None = Field(
        None, description="GPU model each worker needs (Ray's accelerator_type: A100, H100...); the autoscaler "
        "launches only node types carrying it. null: any GPU.")
    memory_gib_per_worker: float | None = Field(
        None, gt=0, description="Host memory (GiB) each worker reserves from Ray; null: none reserved.")
    custom_resources: dict[str, float] = Field(
        default_factory=dict,
        description="Extra Ray resources each worker reserves, e.g. a node-type label {'train_pool': 1}: workers "
        "run only on nodes that offer it (the autoscaler launches that node type).")

    @model_validator(mode="after")
    def _accelerator_needs_gpu(self) -> ScalingSection:
        if self.accelerator_type and not self.use_gpu:
            raise ValueError(f"accelerator_type={self.accelerator_type!r} with use_gpu=false; set use_gpu=true or drop it")
        problems = custom_resource_problems(self.custom_resources, "custom_resources",
                                            "use cpus_per_worker / use_gpu / accelerator_type / memory_gib_per_worker for it")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class DeepSpeedSection(MedforgeModel):
    zero_stage: Literal[2, 3] = Field(3, description="ZeRO stage: 2 shards optimizer+gradients, 3 also parameters.")
    offload_optimizer: bool = Field(False, description="Keep optimizer states in CPU memory (GPU runs only).")
    offload_params: bool = Field(False, description="ZeRO-3 only: keep parameters in CPU memory (GPU runs only).")
    config_path: str | None = Field(
        None,
        description="A DeepSpeed JSON to use instead of the generated one. Batch sizes, gradient accumulation "
        "and precision in it must agree with this config (checked before any worker starts); 'auto' is filled in.",
    )
    gradient_clipping: float = Field(1.0, ge=0, description="Global gradient-norm clip (0 disables).")

    @model_validator(mode="after")
    def _offload_params_needs_zero3(self) -> DeepSpeedSection:
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("offload_params=true needs zero_stage=3; set deepspeed.zero_stage=3 or offload_params=false")
        return self

    _config_path_absolute = field_validator("config_path")(_absolute_if_local)


class OptimSection(MedforgeModel):
    lr: float = Field(2e-5, gt=0, description="Peak learning rate (AlpaCare: 2e-5).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    scheduler: Literal["cosine", "linear", "constant"] = Field("cosine", description="LR schedule after warmup.")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Fraction of total steps spent warming up (AlpaCare: 0.03).")
    epochs: int = Field(3, ge=1, description="Passes over the training split (AlpaCare: 3).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs when smaller).")
    micro_batch_size: int = Field(4, ge=1, description="Sequences (or packed rows) per worker per forward pass.")
    grad_accum_steps: int = Field(1, ge=1, description="Micro-batches accumulated per optimizer step.")
    seed: int = Field(0, description="Seed for init of new weights, shuffling and dropout.")


class CheckpointSection(MedforgeModel):
    storage_path: str = Field(
        description="Where Ray Train persists checkpoints: a local folder or a cloud URI (s3://, gs://). "
        "Rerunning with the same storage_path and name resumes from the latest checkpoint."
    )
    name: str = Field(description="Run name: the folder under storage_path.")

    every_steps: int = Field(0, ge=0, description="Checkpoint every N optimizer steps (0: at the end of each epoch only).")
    num_to_keep: int = Field(2, ge=1, description="Checkpoints kept in storage.")
    max_failures: int = Field(1, ge=-1, description="Worker failures Ray Train recovers from (from the latest checkpoint).")

    _storage_path_absolute = field_validator("storage_path")(_absolute_if_local)


class LoggerSection(MedforgeModel):
    kind: Literal["console", "jsonl", "wandb", "mlflow"] = Field(
        "jsonl", description="Where metrics go (rank 0 only). jsonl also logs to the console."
    )
    project: str = Field("medforge", description="wandb project / mlflow experiment name.")
    every_steps: int = Field(10, ge=1, description="Log training metrics every N optimizer steps.")


class LoRASection(MedforgeModel):
    enabled: bool = Field(False, description="Train LoRA adapters (peft) instead of all weights; merged at export.")
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], description="Module names that get adapters."
    )


class LLMDataSection(MedforgeModel):
    path: str = Field(
        description="Instruction data: a JSONL file (instruction, input, output) or a folder of Parquet shards, "
        "e.g. runs/generate_tiny/dataset/medinstruct.jsonl."
    )
    format: Literal["alpaca", "chat"] = Field(
        "alpaca", description="alpaca: Alpaca prompt (with/without input). chat: the tokenizer's chat template."
    )
    system_prompt: str | None = Field(None, description="chat format only: a system message put before each user turn.")
    max_length: int = Field(1024, ge=16, description="Tokens per example (and per packed row).")
    overflow: Literal["truncate", "drop"] = Field(
        "truncate", description="Examples longer than max_length: cut the response's tail, or drop the example."
    )
    packing: bool = Field(False, description="Pack several examples per row; attention stays within each example.")
    eval_fraction: float = Field(0.02, ge=0, lt=1, description="Held-out fraction for eval loss (stable hash split).")
    max_rows: int | None = Field(None, ge=1, description="Use only the first N rows (smoke runs).")

    _path_absolute = field_validator("path")(_absolute_if_local)


class OutputSection(OutputBase):
    dir: str = Field(
        description="Final HF model folder (safetensors + tokenizer), loadable by vLLM; a local path on a "
        "shared filesystem or a cloud URI. Loss curve and metrics are written next to it."
    )
    overwrite: bool = Field(False, description="Replace an existing output.dir; false: refuse one that is not empty.")

    _dir_absolute = field_validator("dir")(_absolute_if_local)


class SLMOutputSection(OutputBase):
    dir: str = Field(description="Summary JSON, per-seed metrics and loss curves, and the best seed's export in "
                                 "<dir>/model.")

    _dir_absolute = field_validator("dir")(_absolute_if_local)


class FinetuneConfig(JobConfig):
    """Supervised fine-tuning of a causal LM (AlpaCare recipe) on Ray Train + DeepSpeed ZeRO."""

    renamed_keys: ClassVar[dict[str, str]] = {"output.export_dir": "output.dir"}

    model: str = Field(description="Base model: a local HF folder or a hub id (e.g. meta-llama/Llama-2-7b-hf).")
    data: LLMDataSection = Field(description="Training data and formatting.")
    optim: OptimSection = Field(default_factory=OptimSection, description="Optimiser, schedule and batch sizes.")
    deepspeed: DeepSpeedSection = Field(default_factory=DeepSpeedSection, description="DeepSpeed ZeRO settings.")
    scaling: ScalingSection = Field(default_factory=ScalingSection, description="Ray Train workers.")
    checkpoint: CheckpointSection = Field(description="Checkpoint storage and fault tolerance.")
    logger: LoggerSection = Field(default_factory=LoggerSection, description="Metrics logger.")
    lora: LoRASection = Field(default_factory=LoRASection, description="LoRA adapters.")
    output: OutputSection = Field(description="Exported model.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward to save memory.")
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = Field(
        "auto", description="auto: flash_attention_2 on GPU when installed, else sdpa."
    )
    eval_every_steps: int = Field(0, ge=0, description="Eval loss every N steps (0: at each epoch end).")

    _model_absolute = field_validator("model")(_absolute_if_local_folder)


class SLMDataSection(MedforgeModel):
    train_path: str = Field(description="JSONL: id, question, options (dict or list), answer, [overall_context, option_contexts].")
    dev_path: str = Field(description="Dev JSONL (early stopping).")
    test_path: str | None = Field(None, description="Test JSONL (reported accuracy); empty: report dev accuracy.")
    use_context: bool = Field(True, description="Append overall_context + option_context to each option.")
    max_length: int = Field(512, ge=8, le=512, description="Tokens per (question, option) pair; BERT's limit is 512.")
    overflow: Literal["truncate", "drop"] = Field("truncate", description="Longer pairs: cut the option side, or drop the row.")
    few_shot: int | None = Field(None, ge=1, description="Train on a seeded subset of this many rows (100/200/500); empty: all.")

    _paths_absolute = field_validator("train_path", "dev_path", "test_path")(_absolute_if_local)


class FinetuneMCConfig(JobConfig):
    """Multiple-choice fine-tuning of a small encoder (BioLinkBERT-style), with or without generated context."""

    renamed_keys: ClassVar[dict[str, str]] = {"output_dir": "output.dir"}

    model: str = Field(description="Encoder with a multiple-choice head: HF folder or hub id.")
    data: SLMDataSection = Field(description="Train/dev/test data.")
    optim: OptimSection = Field(
        default_factory=lambda: OptimSection(lr=2e-5, epochs=10, warmup_ratio=0.1, micro_batch_size=8),
        description="Optimiser, schedule and batch sizes.",
    )
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1, description="One run per seed; mean/std reported.")
    concurrent_seeds: int = Field(
        1, ge=1, description="Seeds trained at once, each its own Ray Train run: the cluster must hold "
        "concurrent_seeds x scaling.num_workers workers (checked before any starts). 1: one seed after another.")
    patience: int = Field(3, ge=1, description="Stop after this many epochs without a better dev accuracy.")
    deepspeed: DeepSpeedSection = Field(
        default_factory=lambda: DeepSpeedSection(zero_stage=2), description="DeepSpeed ZeRO settings."
    )
    scaling: ScalingSection = Field(default_factory=ScalingSection, description="Ray Train workers.")
    checkpoint: CheckpointSection = Field(description="Checkpoint storage (one run per seed: <name>-seed<k>).")
    logger: LoggerSection = Field(default_factory=LoggerSection, description="Metrics logger.")
    output: SLMOutputSection = Field(description="Summary, per-seed runs and the exported model.")

    _model_absolute = field_validator("model")(_absolute_if_local_folder)
