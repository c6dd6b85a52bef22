"""Supervised fine-tuning of a causal LM on Ray Train + DeepSpeed ZeRO.

Flow: ``preflight`` (driver; every bad input is reported before a worker starts) ->
Ray Data reads and tokenizes the instruction data, streamed and split per worker ->
``train_loop`` (one per worker: DeepSpeed engine, padded or packed batches, eval loss,
checkpoints through ``ray.train.report``) -> rank 0 exports a HF folder that vLLM loads.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from medforge.cards.model import ModelCardInputs, find_dataset_card, write_model_card
from medforge.config.base import ConfigError
from medforge.results import JobResult
from medforge.finetune.common import (
    MetricsLogger,
    cluster_capacity_problems,
    export_folder,
    full_state_dict,
    model_problems,
    peak_flops,
    plot_loss_curve,
    ray_scaling_config,
    train_flops_per_token,
    worker_env,
)
from medforge.finetune.config import FinetuneConfig
from medforge.finetune.deepspeed_config import resolve_deepspeed_config
from medforge.finetune.packing import collate_packed, collate_padded, iter_packed_rows, pack_greedy
from medforge.finetune.prompts import alpaca_chat_template, tokenize_example

logger = logging.getLogger(__name__)

CKPT_TAG = "ds"
STATE_FILE = "medforge_state.json"


# ---------------------------------------------------------------- data


def is_parquet_path(path: str) -> bool:
    """A local folder or ``.parquet`` file; a URI unless it names a ``.json``/``.jsonl`` object
    (``s3://.../dataset/parquet`` is a prefix of shards, not a folder anyone can stat)."""
    if "://" in path:
        return not path.rstrip("/").endswith((".jsonl", ".json"))
    return Path(path).is_dir() or path.endswith(".parquet")


def read_rows(path: str, max_rows: int | None = None) -> Any:
    """Ray Dataset of instruction rows from a JSONL file or a folder of Parquet shards."""
    import ray.data

    ds = ray.data.read_parquet(path) if is_parquet_path(path) else ray.data.read_json(path)
    return ds.limit(max_rows) if max_rows else ds


@functools.lru_cache(maxsize=4)
def _tokenizer(model: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


def split_of(row: dict[str, Any], eval_fraction: float) -> str:
    """Stable train/eval assignment from the row's text, so every pass and every restart agrees."""
    key = f"{row.get('instruction', '')}\x1f{row.get('input', '') or ''}\x1f{row.get('output', '')}"
    return "eval" if zlib.crc32(key.encode("utf-8")) % 10_000 < eval_fraction * 10_000 else "train"


def make_tokenize_fn(cfg: FinetuneConfig) -> Any:
    """A ``map_batches`` function (pyarrow/pandas-free: dict of lists in, dict of lists out)."""
    model, d = cfg.model, cfg.data

    def tokenize_batch(batch: dict[str, Any]) -> dict[str, list[Any]]:
        tok = _tokenizer(model)
        n = len(batch["instruction"])
        out: dict[str, list[Any]] = {"input_ids": [], "labels": [], "n_tokens": [], "status": [], "split": []}
        for i in range(n):
            row = {k: (batch[k][i] if k in batch else "") for k in ("instruction", "input", "output")}
            row = {k: ("" if v is None else str(v)) for k, v in row.items()}
            ex, status = tokenize_example(row, tok, d.format, d.max_length, d.overflow, d.system_prompt)
            out["input_ids"].append(ex["input_ids"] if ex else [])
            out["labels"].append(ex["labels"] if ex else [])
            out["n_tokens"].append(len(ex["input_ids"]) if ex else 0)
            out["status"].append(status)
            out["split"].append(split_of(row, d.eval_fraction))
        return out

    return tokenize_batch


def _to_lists(batch: Any) -> dict[str, list[Any]]:
    return {k: [list(x) if hasattr(x, "__len__") and not isinstance(x, str) else x for x in v] for k, v in batch.items()}


def tokenized_dataset(cfg: FinetuneConfig) -> Any:
    """Lazy Ray Dataset of tokenized examples (all splits, dropped rows included with status)."""
    fn = make_tokenize_fn(cfg)
    ds = read_rows(cfg.data.path, cfg.data.max_rows)
    return ds.map_batches(lambda b: fn(_to_lists(b)), batch_size=256, batch_format="numpy")


@dataclass
class DataStats:
    rows: int = 0
    ok: int = 0
    truncated: int = 0
    dropped: int = 0
    train: int = 0
    eval: int = 0
    train_tokens: int = 0
    train_lengths: list[int] = field(default_factory=list)


def data_stats(tokenized: Any) -> DataStats:
    """One streamed pass over the tokenized data: row counts per status and split, lengths."""
    st = DataStats()
    for batch in tokenized.select_columns(["n_tokens", "status", "split"]).iter_batches(batch_size=4096, batch_format="numpy"):
        for n, status, split in zip(batch["n_tokens"], batch["status"], batch["split"], strict=True):
            st.rows += 1
            setattr(st, str(status), getattr(st, str(status)) + 1)
            if status == "dropped":
                continue
            if split == "train":
                st.train += 1
                st.train_tokens += int(n)
                st.train_lengths.append(int(n))
            else:
                st.eval += 1
    return st


# ---------------------------------------------------------------- preflight


@dataclass
class Plan:
    """Everything the driver worked out before starting workers."""

    ds_config: dict[str, Any]
    stats: DataStats
    steps_per_epoch: int
    total_steps: int


def estimate_steps(cfg: FinetuneConfig, stats: DataStats) -> tuple[int, int]:
    """Optimizer steps per epoch and in total (packing: from a greedy pack of the lengths)."""
    world, o = cfg.scaling.num_workers, cfg.optim
    if cfg.data.packing:
        fake = [{"input_ids": [0] * n} for n in stats.train_lengths]
        rows = sum(len(pack_greedy(fake[i : i + 256], cfg.data.max_length)) for i in range(0, len(fake), 256))
    else:
        rows = stats.train
    micro_per_worker = math.ceil(rows / world / o.micro_batch_size) if rows else 0
    per_epoch = max(micro_per_worker // o.grad_accum_steps, 1)
    total = per_epoch * o.epochs
    if o.max_steps:
        total = min(total, o.max_steps) if not cfg.data.packing else o.max_steps
    return per_epoch, total


def preflight(cfg: FinetuneConfig) -> Plan:
    """Check model, data, DeepSpeed config and cluster; raise ``ConfigError`` listing all problems.

    Needs a joined Ray cluster (reads the data with Ray Data and checks its resources); starts no worker.
    """
    problems = model_problems(cfg.model)
    data_path = cfg.data.path
    if "://" not in data_path and not Path(data_path).exists():
        problems.append(f"data.path = {data_path!r}: not found; fix: point it at <run>/dataset/medinstruct.jsonl or its parquet/ folder")
    problems += cluster_capacity_problems(cfg.scaling, {"checkpoint.storage_path": cfg.checkpoint.storage_path,
                                                        "output.dir": cfg.output.dir})
    if problems:
        raise ConfigError("preflight", problems)

    stats = data_stats(tokenized_dataset(cfg))
    logger.info(
        "data: %d rows, %d truncated, %d dropped (overflow=%s, max_length=%d); train %d, eval %d, %d train tokens",
        stats.rows, stats.truncated, stats.dropped, cfg.data.overflow, cfg.data.max_length,
        stats.train, stats.eval, stats.train_tokens,
    )
    if stats.rows == 0:
        problems.append(f"data.path = {data_path!r}: the dataset is empty; fix: run generate first")
    elif stats.train < cfg.scaling.num_workers:
        problems.append(
            f"data.path = {data_path!r}: {stats.train} usable training rows ({stats.dropped} dropped as longer than "
            f"data.max_length={cfg.data.max_length}) for {cfg.scaling.num_workers} workers; fix: add data, "
            "raise data.max_length or set data.overflow=truncate"
        )
    per_epoch, total = estimate_steps(cfg, stats)
    ds_config, ds_problems = resolve_deepspeed_config(
        cfg.deepspeed, cfg.optim, cfg.scaling.num_workers, cfg.scaling.use_gpu, total
    )
    problems += ds_problems
    if problems:
        raise ConfigError("preflight", problems)
    return Plan(ds_config=ds_config, stats=stats, steps_per_epoch=per_epoch, total_steps=total)


# ---------------------------------------------------------------- model


def load_model(cfg: FinetuneConfig, ds_config: dict[str, Any], device: Any) -> Any:
    """Base model (+ LoRA adapters), with the attention implementation and checkpointing asked for."""
    import torch
    from transformers import AutoModelForCausalLM

    use_gpu = device.type == "cuda"
    attn = cfg.attn_implementation
    if attn == "auto":
        attn = "sdpa"
        if use_gpu:
            try:
                import flash_attn  # noqa: F401

                attn = "flash_attention_2"
            except ImportError:
                pass
    dschf = None
    if use_gpu and ds_config["zero_optimization"]["stage"] == 3 and not cfg.lora.enabled:
        # Partition weights while loading (deepspeed.zero.Init) so no rank holds the full model.
        from transformers.integrations import HfDeepSpeedConfig

        dschf = HfDeepSpeedConfig(ds_config)  # noqa: F841 - must stay alive during from_pretrained
    model = AutoModelForCausalLM.from_pretrained(
        cfg.model, dtype=torch.bfloat16 if use_gpu else torch.float32, attn_implementation=attn
    )
    model.config.use_cache = False
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora.enabled:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as exc:
            raise ImportError("lora.enabled needs peft: pip install 'medforge[train]'") from exc
        lc = cfg.lora
        model = get_peft_model(
            model,
            LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=lc.target_modules, task_type="CAUSAL_LM"),
        )
        if cfg.gradient_checkpointing:
            model.enable_input_require_grads()
    return model


def lm_loss(model: Any, batch: dict[str, Any], device: Any) -> Any:
    """Mean token loss of a padded or packed batch (packed: position_ids, no attention mask)."""
    kwargs = {k: batch[k].to(device) for k in ("input_ids", "labels", "attention_mask", "position_ids") if k in batch}
    return model(**kwargs, use_cache=False).loss


# ---------------------------------------------------------------- worker loop


def _micro_batches(shard: Any, cfg: FinetuneConfig, pad_id: int, shuffle_seed: int | None) -> Any:
    """Yield collated micro-batches from this worker's stream of the split."""

    def examples():
        for batch in shard.iter_batches(
            batch_size=256,
            batch_format="pyarrow",
            local_shuffle_buffer_size=1024 if shuffle_seed is not None else None,
            local_shuffle_seed=shuffle_seed,
        ):
            for row in batch.select(["input_ids", "labels", "status"]).to_pylist():
                if row["status"] != "dropped":
                    yield {"input_ids": row["input_ids"], "labels": row["labels"]}

    mbs = cfg.optim.micro_batch_size
    source = iter_packed_rows(examples(), cfg.data.max_length) if cfg.data.packing else examples()
    chunk: list[Any] = []
    for item in source:
        chunk.append(item)
        if len(chunk) == mbs:
            yield collate_packed(chunk, pad_id) if cfg.data.packing else collate_padded(chunk, pad_id)
            chunk = []
    if chunk:
        yield collate_packed(chunk, pad_id) if cfg.data.packing else collate_padded(chunk, pad_id)


def _all_have(flag: bool, device: Any) -> bool:
    """True only if every worker still has a batch: uneven streams must stop together (ZeRO collectives)."""
    import torch
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def _sum_all(values: list[float], device: Any) -> list[float]:
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def evaluate(engine: Any, cfg: FinetuneConfig, pad_id: int, device: Any) -> float | None:
    """Token-weighted eval loss over the held-out split (all workers)."""
    import ray.train
    import torch

    try:
        shard = ray.train.get_dataset_shard("eval")
    except KeyError:
        return None
    if shard is None:
        return None
    engine.eval()
    loss_sum, n_tok = 0.0, 0.0
    it = iter(_micro_batches(shard, cfg, pad_id, None))
    with torch.no_grad():
        while True:
            batch = next(it, None)
            if not _all_have(batch is not None, device):
                break
            n = int((batch["labels"][:, 1:] != -100).sum())
            loss = lm_loss(engine, batch, device)
            loss_sum += float(loss) * n
            n_tok += n
    engine.train()
    total_loss, total_n = _sum_all([loss_sum, n_tok], device)
    return total_loss / total_n if total_n else None


def _save_checkpoint(engine: Any, state: dict[str, Any], metrics: dict[str, Any]) -> None:
    import ray.train
    from ray.train import Checkpoint

    with tempfile.TemporaryDirectory(prefix="medforge-ckpt-") as tmp:
        engine.save_checkpoint(tmp, tag=CKPT_TAG, client_state={"medforge": state})
        if ray.train.get_context().get_world_rank() == 0:
            Path(tmp, STATE_FILE).write_text(json.dumps(state))
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(tmp))


ADAPTER_DIR = "lora_adapter"


def export_paths(cfg: FinetuneConfig) -> dict[str, str | None]:
    """What a fine-tune leaves for evaluation and serving: ``model`` (the merged HF folder, always) and
    ``adapter`` (the unmerged peft adapter beside it, with ``lora.enabled``; else None)."""
    root = cfg.output.dir.rstrip("/")
    return {"model": root, "adapter": f"{root}/{ADAPTER_DIR}" if cfg.lora.enabled else None}


def export_model(cfg: FinetuneConfig, state_dict: dict[str, Any], tokenizer: Any, out: Path, dtype: Any) -> None:
    """Write a HF folder (safetensors + tokenizer) that is prompted as it was trained.

    With LoRA, the merged model is the folder and the unmerged adapter is kept beside it in
    ``<out>/lora_adapter`` (peft format), so one base model can serve several adapters. With
    ``data.format: alpaca`` the tokenizer's chat template is replaced by one that renders the
    Alpaca training prompt (:func:`medforge.finetune.prompts.alpaca_chat_template`).
    """
    if cfg.data.format == "alpaca":
        tokenizer.chat_template = alpaca_chat_template()
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=dtype)
    if cfg.lora.enabled:
        from peft import LoraConfig, get_peft_model

        lc = cfg.lora
        model = get_peft_model(
            model,
            LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=0.0, target_modules=lc.target_modules, task_type="CAUSAL_LM"),
        )
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
        if unexpected:
            raise RuntimeError(f"unexpected keys in the trained LoRA state: {unexpected[:5]}")
        model.save_pretrained(out / ADAPTER_DIR, safe_serialization=True)
        tokenizer.save_pretrained(out / ADAPTER_DIR)
        model = model.merge_and_unload()
    else:
        model.load_state_dict(state_dict, strict=True)
    model.config.use_cache = True
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def train_loop(config: dict[str, Any]) -> None:
    """Ray Train worker function (``train_loop_config = {"cfg": ..., "ds_config": ..., "plan": ...}``)."""
    import deepspeed
    import ray.train
    import torch

    cfg = FinetuneConfig.model_validate(config["cfg"])
    ds_config = config["ds_config"]
    total_steps = config["total_steps"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.optim.seed)

    tokenizer = _tokenizer(cfg.model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model = load_model(cfg, ds_config, device)
    # ZeRO-3 loading (zero.Init) leaves empty local tensors; ds_numel is the real size.
    n_params = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
    params = [p for p in model.parameters() if p.requires_grad]
    engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=params, config=ds_config)

    state: dict[str, Any] = {"epoch": 0, "micro_in_epoch": 0, "step": 0, "history": [], "tokens": 0}
    ckpt = ray.train.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            _, client = engine.load_checkpoint(d, tag=CKPT_TAG)
        state = client["medforge"]
        # Kept in history.json, so a run shows where it was restored (worker failure or restart).
        state["history"].append({"step": state["step"], "resumed_from_checkpoint": True})
        if rank == 0:
            logger.info("resumed from checkpoint at step %d (epoch %d, micro-batch %d)", state["step"], state["epoch"], state["micro_in_epoch"])

    run_dir = Path(tempfile.gettempdir()) / f"medforge-{cfg.checkpoint.name}"
    mlog = MetricsLogger(cfg.logger, run_dir, cfg.checkpoint.name, rank, config["cfg"])
    accum = cfg.optim.grad_accum_steps
    ckpt_every = cfg.checkpoint.every_steps
    eval_every = cfg.eval_every_steps
    hidden = getattr(model.config, "hidden_size", 0)
    layers = getattr(model.config, "num_hidden_layers", 0)
    peak = peak_flops(torch.cuda.get_device_name()) if device.type == "cuda" else None
    progress = None
    if rank == 0:
        from tqdm import tqdm

        progress = tqdm(total=total_steps, initial=state["step"], desc="sft", unit="step", mininterval=5)

    shard = ray.train.get_dataset_shard("train")
    done = state["step"] >= total_steps
    window_loss, window_n, window_tokens, window_t0 = 0.0, 0, 0, time.perf_counter()
    last_saved = state["step"] if ckpt else -1
    while not done and state["epoch"] < cfg.optim.epochs:
        skip = state["micro_in_epoch"]
        it = iter(_micro_batches(shard, cfg, pad_id, cfg.optim.seed + state["epoch"]))
        for _ in range(skip):  # replay the stream up to where the checkpoint was taken
            next(it, None)
        while True:
            batch = next(it, None)
            if not _all_have(batch is not None, device):
                break
            loss = lm_loss(engine, batch, device)
            engine.backward(loss)
            engine.step()
            state["micro_in_epoch"] += 1
            window_loss += float(loss.detach())
            window_n += 1
            window_tokens += batch["num_tokens"]
            if state["micro_in_epoch"] % accum:
                continue
            state["step"] += 1
            if progress:
                progress.update(1)
            step = state["step"]
            if step % cfg.logger.every_steps == 0 or step == total_steps:
                loss_sum, n_sum, tok_sum = _sum_all([window_loss, window_n, window_tokens], device)
                dt = time.perf_counter() - window_t0
                rec: dict[str, Any] = {
                    "step": step,
                    "epoch": state["epoch"],
                    "train_loss": loss_sum / max(n_sum, 1),
                    "lr": float(engine.get_lr()[0]),
                    "tokens_per_s": tok_sum / dt,
                }
                if peak:
                    seq = cfg.data.max_length
                    rec["mfu"] = rec["tokens_per_s"] * train_flops_per_token(n_params, layers, hidden, seq) / (peak * world)
                state["tokens"] += int(tok_sum)
                state["history"].append(rec)
                mlog.log(rec, step)
                window_loss, window_n, window_tokens, window_t0 = 0.0, 0, 0, time.perf_counter()
            if eval_every and step % eval_every == 0:
                ev = evaluate(engine, cfg, pad_id, device)
                if ev is not None:
                    state["history"].append({"step": step, "eval_loss": ev})
                    mlog.log({"eval_loss": ev}, step)
            if ckpt_every and step % ckpt_every == 0:
                _save_checkpoint(engine, state, _final_metrics(state))
                last_saved = step
            if step >= total_steps:
                done = True
                break
        if not done:
            state["epoch"] += 1
            state["micro_in_epoch"] = 0
        if not eval_every:
            ev = evaluate(engine, cfg, pad_id, device)
            if ev is not None:
                state["history"].append({"step": state["step"], "eval_loss": ev})
                mlog.log({"eval_loss": ev}, state["step"])
        if not ckpt_every or done:
            if last_saved != state["step"]:
                _save_checkpoint(engine, state, _final_metrics(state))
                last_saved = state["step"]
    if progress:
        progress.close()

    sd = full_state_dict(engine)
    if rank == 0:
        with tempfile.TemporaryDirectory(prefix="medforge-export-") as tmp:
            out = Path(tmp) / "model"
            export_model(cfg, sd, tokenizer, out, torch.bfloat16 if device.type == "cuda" else torch.float32)
            logs = out / "training_logs"
            logs.mkdir()
            plot_loss_curve(state["history"], logs / "loss_curve.png", f"SFT {cfg.checkpoint.name}")
            (logs / "history.json").write_text(json.dumps(state["history"], indent=1))
            if (run_dir / "metrics.jsonl").is_file():
                (logs / "metrics.jsonl").write_text((run_dir / "metrics.jsonl").read_text())
            _write_model_card(cfg, out, state)
            export_folder(out, cfg.output.dir, cfg.output.overwrite)
        logger.info("exported %s", cfg.output.dir)
    mlog.close()


def _write_model_card(cfg: FinetuneConfig, out: Path, state: dict[str, Any]) -> None:
    """README.md (a Hugging Face model card) into the export; a failure here never loses the model."""
    try:
        write_model_card(out, ModelCardInputs(
            kind="llm", base_model=cfg.model, data=cfg.data.path, config=cfg.model_dump(mode="json"),
            history=state["history"], results=_final_metrics(state), dataset_card=find_dataset_card(cfg.data.path)))
    except Exception:  # noqa: BLE001
        logger.exception("could not write the model card; the export is unaffected")


def _final_metrics(state: dict[str, Any]) -> dict[str, Any]:
    keys = ("train_loss", "eval_loss", "tokens_per_s", "mfu")
    return {"step": state["step"], **{k: v for k in keys if (v := _last(state, k)) is not None}}


def _last(state: dict[str, Any], key: str) -> float | None:
    for h in reversed(state["history"]):
        if h.get(key) is not None:
            return h[key]
    return None


# ---------------------------------------------------------------- driver


class FinetuneResult(JobResult):
    """What ``run_finetune`` returns: the last reported metrics, the data's counts and where the model is."""

    step: int | None = Field(None, description="Optimiser steps done.")
    train_loss: float | None = Field(None, description="Mean train loss of the last logged window.")
    eval_loss: float | None = Field(None, description="Last eval loss (held-out split).")
    tokens_per_s: float | None = Field(None, description="Train tokens per second of the last logged window.")
    mfu: float | None = Field(None, description="Model FLOPs utilisation of the last window (GPU runs).")
    first_train_loss: float | None = Field(None, description="Train loss of the first logged window.")
    wall_s: float = Field(description="Wall time of the Ray Train run.")
    rows: int = Field(description="Rows read.")
    truncated: int = Field(description="Rows cut at data.max_length.")
    dropped: int = Field(description="Rows dropped (empty after formatting, or too long with overflow=drop).")
    train_rows: int = Field(description="Rows trained on.")
    eval_rows: int = Field(description="Rows held out for eval loss.")
    export_dir: str = Field(description="The exported model folder (= output_dir).")
    checkpoint: str | None = Field(None, description="The last checkpoint.")


def run_finetune(cfg: FinetuneConfig) -> FinetuneResult:
    """Preflight, then fit on Ray Train; returns the summary (also written next to the export).

    Raises:
        ConfigError: a bad input found before any worker started.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer

    if "://" not in cfg.output.dir and Path(cfg.output.dir).exists() and not cfg.output.overwrite:
        if any(Path(cfg.output.dir).iterdir()):
            raise ConfigError("preflight", [f"output.dir = {cfg.output.dir!r} exists; fix: set output.overwrite=true or pick another folder"])
    plan = preflight(cfg)
    logger.info("DeepSpeed config:\n%s", json.dumps(plan.ds_config, indent=1))
    logger.info("plan: %d optimizer steps (%d per epoch)", plan.total_steps, plan.steps_per_epoch)
    from ray.data.expressions import col

    tokenized = tokenized_dataset(cfg).filter(expr=col("status") != "dropped")
    datasets = {"train": tokenized.filter(expr=col("split") == "train")}
    if plan.stats.eval >= cfg.scaling.num_workers:
        datasets["eval"] = tokenized.filter(expr=col("split") == "eval")
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={
            "cfg": cfg.model_dump(mode="json"),
            "ds_config": plan.ds_config,
            "total_steps": plan.total_steps,
            "steps_per_epoch": plan.steps_per_epoch,
        },
        scaling_config=ray_scaling_config(cfg.scaling),
        run_config=RunConfig(
            name=cfg.checkpoint.name,
            storage_path=cfg.checkpoint.storage_path,
            failure_config=FailureConfig(max_failures=cfg.checkpoint.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.checkpoint.num_to_keep),
            worker_runtime_env={"env_vars": worker_env()},
        ),
        datasets=datasets,
    )
    t0 = time.perf_counter()
    result = trainer.fit()
    metrics = result.metrics or {}
    return FinetuneResult(
        output_dir=cfg.output.dir,
        **{k: metrics.get(k) for k in ("step", "train_loss", "eval_loss", "tokens_per_s", "mfu")},
        first_train_loss=_first_loss(cfg.output.dir),
        wall_s=round(time.perf_counter() - t0, 1),
        rows=plan.stats.rows,
        truncated=plan.stats.truncated,
        dropped=plan.stats.dropped,
        train_rows=plan.stats.train,
        eval_rows=plan.stats.eval,
        export_dir=cfg.output.dir,
        checkpoint=result.checkpoint.path if result.checkpoint else None,
    )


def _first_loss(export_dir: str) -> float | None:
    hist = Path(export_dir) / "training_logs" / "history.json"
    if "://" in export_dir or not hist.is_file():
        return None
    losses = [h["train_loss"] for h in json.loads(hist.read_text()) if "train_loss" in h]
    return losses[0] if losses else None
