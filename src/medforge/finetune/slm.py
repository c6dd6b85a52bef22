"""Multiple-choice fine-tuning of a small encoder, with or without generated context.

Each option becomes one pair ``[CLS] question [SEP] option + overall_context + option_context [SEP]``
scored by ``AutoModelForMultipleChoice`` (the encoding lives in :mod:`medforge.mc.encoding`,
shared with evaluation and serving). One Ray Train run (DeepSpeed ZeRO) per seed, ``concurrent_seeds``
of them at once; early stopping on dev accuracy; test accuracy is taken at the best dev epoch;
mean and std over seeds.

Export: each seed's weights at its best dev epoch are saved as a Hugging Face folder
``<output.dir>/<checkpoint.name>-seed<k>/model`` (see :func:`medforge.mc.scorer.save_mc_export`:
``AutoModelForMultipleChoice`` + tokenizer + ``medforge_mc.json``), and the best seed's (by dev
accuracy) is copied to ``<output.dir>/model``. Load it with :func:`medforge.mc.scorer.load_mc_model`.

Input rows (JSONL): ``id``, ``question``, ``options`` (``{"A": ...}`` or a list), ``answer``
(a label like ``"A"`` or an index), optional ``overall_context`` (str) and ``option_contexts``
(``{"A": str}`` or a list).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from medforge.cards.model import ModelCardInputs, find_dataset_card, write_model_card
from medforge.config.base import ConfigError
from medforge.io import clear_output_folder, read_jsonl
from medforge.mc.encoding import MCFormat, collate_mc, encode_rows, normalize_row
from medforge.mc.scorer import save_mc_export
from medforge.results import JobResult, ResultModel
from medforge.finetune.common import (
    MetricsLogger,
    cluster_capacity_problems,
    full_state_dict,
    mean_std,
    model_problems,
    plot_loss_curve,
    ray_scaling_config,
    worker_env,
)
from medforge.finetune.config import FinetuneMCConfig
from medforge.finetune.deepspeed_config import resolve_deepspeed_config

logger = logging.getLogger(__name__)

CKPT_TAG = "ds"


def mc_export_dir(cfg: FinetuneMCConfig) -> str:
    """The folder the best seed's model is exported to (what /v1/medqa's ``mc_model`` and evaluate-mc read)."""
    return str(Path(cfg.output.dir) / "model")


def load_split(path: str, field: str) -> tuple[list[dict[str, Any]], list[str]]:
    if not Path(path).is_file():
        return [], [f"{field} = {path!r}: file not found; fix: point it at a JSONL of MC questions"]
    rows = list(read_jsonl(path))
    if not rows:
        return [], [f"{field} = {path!r}: the dataset is empty; fix: point it at a non-empty JSONL"]
    problems = []
    for i, row in enumerate(rows):
        try:
            normalize_row(row)
        except ValueError as exc:
            problems.append(f"{field} = {path!r}: row {i} (id {row.get('id')!r}): {exc}")
            if len(problems) >= 5:
                break
    n_opts = {len(r["options"]) for r in rows if "options" in r}
    if len(n_opts) > 1:
        problems.append(f"{field} = {path!r}: rows have different numbers of options {sorted(n_opts)}; fix: split the file by option count")
    return rows, problems


def preflight(cfg: FinetuneMCConfig) -> dict[str, Any]:
    """Check model, data and cluster; encode all splits on the driver (small data); raise ``ConfigError``."""
    from transformers import AutoTokenizer

    problems = model_problems(cfg.model)
    d = cfg.data
    splits: dict[str, list[dict[str, Any]]] = {}
    for name, path in (("train", d.train_path), ("dev", d.dev_path), ("test", d.test_path)):
        if path is None:
            continue
        rows, probs = load_split(path, f"data.{name}_path")
        splits[name] = rows
        problems += probs
    if d.use_context and splits.get("train") and not any(
        r.get("overall_context") or r.get("option_contexts") for r in splits["train"]
    ):
        problems.append(
            f"data.use_context = true but no row of {d.train_path!r} has overall_context/option_contexts; "
            "fix: run the context-generation job first, or set data.use_context=false"
        )
    problems += cluster_capacity_problems(cfg.scaling, {"checkpoint.storage_path": cfg.checkpoint.storage_path,
                                                        "output.dir": cfg.output.dir},
                                          runs=min(cfg.concurrent_seeds, len(cfg.seeds)))
    if problems:
        raise ConfigError("preflight", problems)
    tok = AutoTokenizer.from_pretrained(cfg.model)
    encoded: dict[str, Any] = {}
    for name, rows in splits.items():
        enc, counts = encode_rows(rows, tok, d.use_context, d.max_length, d.overflow)
        logger.info("%s: %d rows, %d truncated, %d dropped (max_length=%d, overflow=%s)", name, len(rows), counts["truncated"], counts["dropped"], d.max_length, d.overflow)
        if not enc:
            problems.append(f"data.{name}_path: every row is longer than data.max_length={d.max_length}; fix: set data.overflow=truncate")
        encoded[name] = enc
    if encoded.get("train") and len(encoded["train"]) < cfg.scaling.num_workers:
        problems.append(f"data.train_path: {len(encoded['train'])} rows for {cfg.scaling.num_workers} workers; fix: add data or lower scaling.num_workers")
    if d.few_shot and encoded.get("train") and d.few_shot > len(encoded["train"]):
        problems.append(f"data.few_shot = {d.few_shot}: only {len(encoded['train'])} training rows; fix: lower it or leave it empty")
    if problems:
        raise ConfigError("preflight", problems)
    return encoded


def few_shot_subset(rows: list[Any], k: int | None, seed: int) -> list[Any]:
    """``k`` rows drawn with ``seed`` (every seed gets its own subset), or all rows."""
    if not k or k >= len(rows):
        return list(rows)
    return random.Random(seed).sample(rows, k)


def _accuracy(engine: Any, rows: list[dict[str, Any]], pad_id: int, bs: int, device: Any) -> float:
    """Accuracy over ``rows``; each worker scores every world-th row, counts are summed."""
    import ray.train
    import torch
    import torch.distributed as dist

    ctx = ray.train.get_context()
    mine = rows[ctx.get_world_rank() :: ctx.get_world_size()]
    correct = total = 0
    engine.eval()
    n_batches = torch.tensor([-(-len(mine) // bs)], device=device)
    dist.all_reduce(n_batches, op=dist.ReduceOp.MAX)  # ZeRO-3 forwards are collective: same count on all ranks
    with torch.no_grad():
        for b in range(int(n_batches.item())):
            chunk = mine[b * bs : (b + 1) * bs] or mine[:1] or rows[:1]
            real = len(mine[b * bs : (b + 1) * bs])
            batch = collate_mc(chunk, pad_id)
            logits = engine(**{k: batch[k].to(device) for k in ("input_ids", "token_type_ids", "attention_mask")}).logits
            pred = logits.argmax(-1).cpu()
            correct += int((pred[:real] == batch["labels"][:real]).sum())
            total += real
    engine.train()
    t = torch.tensor([correct, total], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t[0] / t[1]) if t[1] else 0.0


def mc_format(cfg: FinetuneMCConfig, num_options: int, labels: list[str]) -> MCFormat:
    """The input format of a model trained with ``cfg`` (saved next to its weights)."""
    d = cfg.data
    return MCFormat(max_length=d.max_length, use_context=d.use_context, num_options=num_options,
                    labels=list(labels), overflow=d.overflow)


def _export_best(engine: Any, model: Any, tok: Any, cfg: FinetuneMCConfig, run_name: str,
                 num_options: int, labels: list[str]) -> None:
    """Save the current weights as ``<output.dir>/<run_name>/model`` (collective; rank 0 writes)."""
    import ray.train

    sd = full_state_dict(engine)
    if ray.train.get_context().get_world_rank() == 0:
        save_mc_export(Path(cfg.output.dir) / run_name / "model", model, tok, mc_format(cfg, num_options, labels), state_dict=sd)


def train_loop(config: dict[str, Any]) -> None:
    """Ray Train worker: train one seed with early stopping on dev accuracy."""
    import deepspeed
    import ray.train
    import torch
    from ray.train import Checkpoint
    from transformers import AutoModelForMultipleChoice, AutoTokenizer

    cfg = FinetuneMCConfig.model_validate(config["cfg"])
    seed, ds_config = config["seed"], config["ds_config"]
    dev, test = config["dev"], config.get("test")
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    device = ray.train.torch.get_device()
    torch.manual_seed(seed)
    random.seed(seed)
    tok = AutoTokenizer.from_pretrained(cfg.model)
    pad_id = tok.pad_token_id or 0
    model = AutoModelForMultipleChoice.from_pretrained(cfg.model, dtype=torch.float32)
    engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=[p for p in model.parameters() if p.requires_grad], config=ds_config)

    state: dict[str, Any] = {"epoch": 0, "step": 0, "best_dev": -1.0, "test_at_best": None, "bad_epochs": 0, "history": []}
    ckpt = ray.train.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            _, client = engine.load_checkpoint(d, tag=CKPT_TAG)
        state = client["medforge"]
    run_name = f"{cfg.checkpoint.name}-seed{seed}"
    mlog = MetricsLogger(cfg.logger, Path(cfg.output.dir) / run_name, run_name, rank, config["cfg"])
    shard = ray.train.get_dataset_shard("train")
    bs = cfg.optim.micro_batch_size
    t_tokens, t0 = 0, time.perf_counter()
    while state["epoch"] < cfg.optim.epochs and state["bad_epochs"] < cfg.patience:
        losses = []
        it = shard.iter_batches(batch_size=bs, batch_format="pyarrow", local_shuffle_buffer_size=256, local_shuffle_seed=seed + state["epoch"])
        batches = iter(it)
        while True:
            b = next(batches, None)
            flag = torch.tensor([0 if b is None else 1], device=device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
            if not flag.item():
                break
            batch = collate_mc(b.to_pylist(), pad_id)
            out = engine(**{k: batch[k].to(device) for k in ("input_ids", "token_type_ids", "attention_mask", "labels")})
            engine.backward(out.loss)
            engine.step()
            losses.append(float(out.loss.detach()))
            t_tokens += batch["num_tokens"]
            state["step"] = int(engine.global_steps)
        dev_acc = _accuracy(engine, dev, pad_id, bs * 2, device)
        improved = dev_acc > state["best_dev"]
        if improved:
            state["best_dev"], state["bad_epochs"] = dev_acc, 0
            state["test_at_best"] = _accuracy(engine, test, pad_id, bs * 2, device) if test else None
            # Written before the epoch's checkpoint is reported: a resumed run rewrites it
            # whenever dev accuracy improves again, so the export is the best-dev weights.
            _export_best(engine, model, tok, cfg, run_name, config["num_options"], config["labels"])
        else:
            state["bad_epochs"] += 1
        tok_s = torch.tensor([t_tokens], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(tok_s)
        rec = {
            "step": state["step"],
            "epoch": state["epoch"],
            "train_loss": sum(losses) / max(len(losses), 1),
            "dev_accuracy": dev_acc,
            "tokens_per_s": float(tok_s.item()) / (time.perf_counter() - t0),
        }
        state["history"].append(rec)
        mlog.log(rec, state["step"])
        state["epoch"] += 1
        metrics = {"seed": seed, "epoch": state["epoch"], "dev_accuracy": dev_acc, "best_dev_accuracy": state["best_dev"], "test_accuracy": state["test_at_best"], "tokens_per_s": rec["tokens_per_s"]}
        with tempfile.TemporaryDirectory(prefix="medforge-slm-") as tmp:
            engine.save_checkpoint(tmp, tag=CKPT_TAG, client_state={"medforge": state})
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(tmp))
    if rank == 0:
        out = Path(cfg.output.dir) / run_name
        out.mkdir(parents=True, exist_ok=True)
        plot_loss_curve(state["history"], out / "loss_curve.png", f"MC {run_name}")
        (out / "history.json").write_text(json.dumps(state["history"], indent=1))
    mlog.close()


def _fit_seed(cfg: FinetuneMCConfig, seed: int, train_rows: list[Any], ds_config: dict[str, Any],
              encoded: dict[str, Any], num_options: int, labels: list[str]) -> dict[str, Any]:
    """One seed's Ray Train run; its result as a ``seeds`` entry of the summary."""
    import ray.data
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"cfg": cfg.model_dump(mode="json"), "seed": seed, "ds_config": ds_config, "dev": encoded["dev"],
                           "test": encoded.get("test"), "num_options": num_options, "labels": labels},
        scaling_config=ray_scaling_config(cfg.scaling),
        run_config=RunConfig(
            name=f"{cfg.checkpoint.name}-seed{seed}",
            storage_path=cfg.checkpoint.storage_path,
            failure_config=FailureConfig(max_failures=cfg.checkpoint.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.checkpoint.num_to_keep),
            worker_runtime_env={"env_vars": worker_env()},
        ),
        datasets={"train": ray.data.from_items(train_rows)},
        dataset_config=DataConfig(datasets_to_split=["train"]),
    )
    result = trainer.fit()
    m = result.metrics or {}
    acc = m.get("test_accuracy") if m.get("test_accuracy") is not None else m.get("best_dev_accuracy")
    export = Path(cfg.output.dir) / f"{cfg.checkpoint.name}-seed{seed}" / "model"
    logger.info("seed %d: accuracy %.4f (best dev %.4f)", seed, acc, m.get("best_dev_accuracy"))
    return {"seed": seed, "accuracy": acc, "best_dev_accuracy": m.get("best_dev_accuracy"), "epochs": m.get("epoch"),
            "tokens_per_s": m.get("tokens_per_s"), "export_dir": str(export)}


def _write_model_card(cfg: FinetuneMCConfig, export_dir: Path, best: dict[str, Any], mean: float, std: float,
                      per_seed: list[dict[str, Any]]) -> None:
    """README.md (a Hugging Face model card) into the export; a failure here never loses the model."""
    try:
        hist_path = Path(best["export_dir"]).parent / "history.json"
        history = json.loads(hist_path.read_text()) if hist_path.is_file() else []
        results = {"metric": "test_accuracy" if cfg.data.test_path else "dev_accuracy", "mean_accuracy": mean,
                   "std_accuracy": std, "seeds": len(per_seed), "exported_seed": best["seed"],
                   "exported_seed_best_dev_accuracy": best["best_dev_accuracy"],
                   **{f"seed_{s['seed']}_accuracy": s["accuracy"] for s in per_seed}}
        write_model_card(export_dir, ModelCardInputs(
            kind="multiple-choice", base_model=cfg.model, data=cfg.data.train_path, config=cfg.model_dump(mode="json"),
            history=history, results=results, dataset_card=find_dataset_card(cfg.data.train_path)))
    except Exception:  # noqa: BLE001
        logger.exception("could not write the model card; the export is unaffected")


class SeedResult(ResultModel):
    seed: int
    accuracy: float | None = Field(description="Test accuracy (dev accuracy without a test set).")
    best_dev_accuracy: float | None
    epochs: int | None
    tokens_per_s: float | None
    export_dir: str = Field(description="This seed's best model.")


class FinetuneMCResult(JobResult):
    """What ``run_finetune_mc`` returns (and writes to ``<output.dir>/summary.json``)."""

    metric: str = Field(description="test_accuracy, or dev_accuracy without a test set.")
    mean_accuracy: float
    std_accuracy: float
    seeds: list[SeedResult]
    use_context: bool
    few_shot: int | None
    train_rows: int
    export_dir: str = Field(description="The best seed's model, copied to <output.dir>/model.")
    export_seed: int


def run_finetune_mc(cfg: FinetuneMCConfig) -> FinetuneMCResult:
    """One Ray Train run per seed (``concurrent_seeds`` of them at once); returns (and writes) mean/std
    of accuracy over seeds."""
    from concurrent.futures import ThreadPoolExecutor

    encoded = preflight(cfg)
    if cfg.output.overwrite and "://" not in cfg.output.dir:
        clear_output_folder(cfg.output.dir)
    # preflight made sure every train row has the same option count
    num_options = len(encoded["train"][0]["input_ids"])
    labels = encoded["train"][0]["option_labels"]
    runs = []  # (seed, its few-shot rows, its DeepSpeed config): all resolved before any seed starts
    for seed in cfg.seeds:
        train_rows = few_shot_subset(encoded["train"], cfg.data.few_shot, seed)
        micro_per_worker = -(-len(train_rows) // cfg.scaling.num_workers // cfg.optim.micro_batch_size)
        total_steps = max(micro_per_worker // cfg.optim.grad_accum_steps, 1) * cfg.optim.epochs
        ds_config, problems = resolve_deepspeed_config(cfg.deepspeed, cfg.optim, cfg.scaling.num_workers, cfg.scaling.use_gpu, total_steps)
        if problems:
            raise ConfigError("preflight", problems)
        runs.append((seed, train_rows, ds_config))

    def fit(run: tuple[int, list[Any], dict[str, Any]]) -> dict[str, Any]:
        seed, train_rows, ds_config = run
        return _fit_seed(cfg, seed, train_rows, ds_config, encoded, num_options, labels)

    parallel = min(cfg.concurrent_seeds, len(runs))
    if parallel == 1:
        per_seed = [fit(r) for r in runs]
    else:
        # Threads only wait on Ray (each fit() drives its own Ray Train controller); results keep seed order.
        with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="medforge-seed") as pool:
            per_seed = list(pool.map(fit, runs))
    mean, std = mean_std([s["accuracy"] for s in per_seed])
    best = max(per_seed, key=lambda s: s["best_dev_accuracy"] if s["best_dev_accuracy"] is not None else -1.0)
    export_dir = Path(mc_export_dir(cfg))
    if Path(best["export_dir"]).is_dir():
        shutil.rmtree(export_dir, ignore_errors=True)
        shutil.copytree(best["export_dir"], export_dir)
        logger.info("exported seed %d (best dev accuracy) to %s", best["seed"], export_dir)
        _write_model_card(cfg, export_dir, best, mean, std, per_seed)
    result = FinetuneMCResult(
        output_dir=cfg.output.dir,
        metric="test_accuracy" if cfg.data.test_path else "dev_accuracy",
        mean_accuracy=mean,
        std_accuracy=std,
        seeds=[SeedResult(**s) for s in per_seed],
        use_context=cfg.data.use_context,
        few_shot=cfg.data.few_shot,
        train_rows=len(encoded["train"]),
        export_dir=str(export_dir),
        export_seed=best["seed"],
    )
    Path(cfg.output.dir).mkdir(parents=True, exist_ok=True)
    (Path(cfg.output.dir) / "summary.json").write_text(result.summary_json())
    return result
