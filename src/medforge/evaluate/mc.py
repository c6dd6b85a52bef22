"""Multiple-choice evaluation: exported SLMs scored on MedQA / MedMCQA / HEADQA / generic JSONL,
with and without context, and few-shot curves from fine-tuning runs.

Scoring runs in the driver with :func:`medforge.mc.scorer.score_rows` (the same encoding as
training and serving). Rows the readers of :mod:`medforge.datasets.mcq` reject are quarantined
with their reason (``quarantine.jsonl``, counted in the report); rows without an answer are
scored but left out of the accuracy (``n_scored``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import Field

from medforge.config.base import ConfigError
from medforge.datasets.mcq import iter_mcq_file, quarantine_record
from medforge.evaluate.config import EvaluateMCConfig
from medforge.evaluate.report import write_mc_report
from medforge.io import atomic_write_jsonl, clear_output_folder
from medforge.mc.scorer import load_mc_model, score_rows
from medforge.results import JobResult, ResultModel
from medforge.finetune.common import mean_std

logger = logging.getLogger(__name__)

CONTEXT_FIELDS = ("overall_context", "option_contexts")


def read_mc_dataset(path: str | Path, fmt: str = "auto", cop_base: int = 1) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(rows, quarantine)``: normalised rows (with their contexts, where the file has them) and rejected lines."""
    raw_lines = Path(path).read_bytes().split(b"\n")
    rows, bad = [], []
    for index, row, reason in iter_mcq_file(path, fmt, cop_base):
        if row is None:
            bad.append(quarantine_record(index, reason, path))
            continue
        try:
            rec = json.loads(raw_lines[index])
        except (json.JSONDecodeError, IndexError):
            rec = {}
        row.update({k: rec[k] for k in CONTEXT_FIELDS if rec.get(k)})
        rows.append(row)
    return rows, bad


def score_dataset(mc: Any, rows: list[dict[str, Any]], context: str, batch_size: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Predictions and accuracy of one model on one dataset under one context setting."""
    use = {"with": True, "without": False, "as_trained": None}[context]
    preds = score_rows(mc, rows, batch_size=batch_size, use_context=use)
    scored = [p for p in preds if p["correct"] is not None]
    acc = sum(p["correct"] for p in scored) / len(scored) if scored else None
    return preds, {"n_rows": len(rows), "n_scored": len(scored), "accuracy": acc,
                   "correct": sum(p["correct"] for p in scored), "truncated": sum(p["truncated"] for p in preds)}


def few_shot_curves(run_dirs: list[str]) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Points (shots, mean/std accuracy over seeds) per context setting, from finetune-mc ``summary.json`` files."""
    curves: dict[str, list[dict[str, Any]]] = {}
    problems = []
    for d in run_dirs:
        f = Path(d) / "summary.json"
        if not f.is_file():
            problems.append(f"few_shot_runs: {d!r} has no summary.json; fix: point at a finished finetune-mc output.dir")
            continue
        s = json.loads(f.read_text())
        accs = [x["accuracy"] for x in s.get("seeds", []) if x.get("accuracy") is not None]
        if not accs:
            problems.append(f"few_shot_runs: {d!r}: summary.json has no per-seed accuracy; fix: rerun finetune-mc")
            continue
        mean, std = mean_std(accs)
        label = f"{'with' if s.get('use_context') else 'without'} context ({s.get('metric', 'accuracy')})"
        curves.setdefault(label, []).append({"shots": s.get("few_shot") or s.get("train_rows"), "mean_accuracy": mean,
                                             "std_accuracy": std, "n_seeds": len(accs), "run": str(d)})
    return curves, problems


class MCScore(ResultModel):
    model: str
    dataset: str
    context: str = Field(description="with, without or as_trained.")
    accuracy: float | None
    n_scored: int


class FewShotPoint(ResultModel):
    shots: int | None
    mean_accuracy: float
    std_accuracy: float
    n_seeds: int
    run: str


class EvaluateMCResult(JobResult):
    """What ``run_evaluate_mc`` returns. ``report`` is the whole ``report.json`` (not printed)."""

    results: list[MCScore] = Field(description="One per model, dataset and context setting.")
    few_shot: dict[str, list[FewShotPoint]] = Field(description="Accuracy-vs-shots curves, per context setting.")
    report: dict[str, Any] = Field(exclude=True, description="The full report, as written to report.json.")


def run_evaluate_mc(cfg: EvaluateMCConfig) -> EvaluateMCResult:
    """Score every model on every dataset under every context setting; write the report."""
    problems = [f"datasets: {d.path!r}: file not found; fix: point it at a JSONL file" for d in cfg.datasets if not Path(d.path).is_file()]
    problems += [f"models.{k} = {p!r}: not a medforge multiple-choice export (no medforge_mc.json); fix: point at the 'model' "
                 "folder that medforge finetune-mc writes into its output.dir" for k, p in cfg.models.items()
                 if not (Path(p) / "medforge_mc.json").is_file()]
    curves, fs_problems = few_shot_curves(cfg.few_shot_runs)
    if problems + fs_problems:
        raise ConfigError("evaluate-mc", problems + fs_problems)
    out = Path(cfg.output.dir)
    if cfg.output.overwrite:
        clear_output_folder(out)
    datasets = {}
    quarantine = []
    for d in cfg.datasets:
        rows, bad = read_mc_dataset(d.path, d.format, d.cop_base)
        quarantine += [{**b, "dataset": d.label} for b in bad]
        if not rows:
            raise ConfigError("evaluate-mc", [f"datasets: {d.path!r}: no readable row ({len(bad)} quarantined, first: "
                                              f"{bad[0]['reason'] if bad else 'empty file'}); fix: check the file and datasets.format"])
        datasets[d.label] = (rows, len(bad))
    results, predictions = [], []
    for name, path in cfg.models.items():
        mc = load_mc_model(path, cfg.device)
        for dname, (rows, n_bad) in datasets.items():
            has_ctx = any(r.get(k) for r in rows for k in CONTEXT_FIELDS)
            for context in cfg.use_context:
                if context == "with" and not has_ctx:
                    logger.warning("%s has no overall_context/option_contexts: 'with context' equals 'without' there", dname)
                preds, stats = score_dataset(mc, rows, context, cfg.batch_size)
                results.append({"model": name, "dataset": dname, "context": context, "trained_with_context": mc.format.use_context,
                                "dataset_has_context": has_ctx, "quarantined": n_bad, **stats})
                predictions += [{"model": name, "dataset": dname, "context": context, **p} for p in preds]
                logger.info("%s on %s (context %s): accuracy %s over %d", name, dname, context, stats["accuracy"], stats["n_scored"])
    atomic_write_jsonl(out / "predictions.jsonl", predictions)
    atomic_write_jsonl(out / "quarantine.jsonl", quarantine)
    report = {"results": results, "few_shot": curves, "quarantined": len(quarantine),
              "models": dict(cfg.models), "datasets": {d.label: d.path for d in cfg.datasets}}
    write_mc_report(report, out)
    return EvaluateMCResult(output_dir=cfg.output.dir,
                            results=[MCScore(**{k: r[k] for k in MCScore.model_fields}) for r in results],
                            few_shot=curves, report=report)
