"""The model card (``README.md``) of a fine-tune export: LLM (SFT) and multiple-choice alike.

:class:`ModelCardInputs` is plain data, saved beside the card as ``model_card.json`` so that a
later step can add what it learns: the pipeline adds the evaluation results once it has them
(``lineage.json``, :func:`update_with_lineage`) and the card is rendered again. :func:`model_card`
is pure (text and the loss plot as PNG).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medforge.cards import render as R
from medforge.io import atomic_write_text

INPUTS_FILE = "model_card.json"


@dataclass
class ModelCardInputs:
    """What a model card shows.

    Attributes:
        kind: ``"llm"`` (instruction-tuned causal LM) or ``"multiple-choice"`` (encoder + MC head).
        base_model: the model it was tuned from.
        data: the training data (path); ``dataset_card`` the dataset's card, when one is found.
        config: the training config, as JSON.
        history: per-step (LLM) or per-epoch (MC) records with ``train_loss`` / ``eval_loss`` / accuracies.
        results: final training metrics (loss, accuracy, seeds ...).
        evaluation: evaluation results (win rates per reference ...) once known; ``None`` before.
    """

    kind: str
    base_model: str
    data: str
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    dataset_card: str | None = None
    evaluation: dict[str, Any] | None = None
    lineage: str | None = None


def find_dataset_card(data_path: str) -> str | None:
    """The ``card.md`` of the run that wrote ``data_path`` (``<run>/dataset/medinstruct.jsonl`` or a
    shard folder under it; a contexts run's ``out/``), searching up to three folders up."""
    if "://" in data_path:
        return None
    p = Path(data_path)
    for parent in [p if p.is_dir() else p.parent, *list(p.parents)[:3]]:
        if (parent / "card.md").is_file():
            return str(parent / "card.md")
    return None


def _loss_points(history: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    x = "step" if any("step" in h for h in history) else "epoch"
    return [(float(h.get(x, i)), float(h[key])) for i, h in enumerate(history) if h.get(key) is not None]


def model_card(inp: ModelCardInputs, plots: bool = True) -> R.Card:
    """The card (pure)."""
    llm = inp.kind == "llm"
    card = R.Card(title=f"{'Medical instruction-tuned LLM' if llm else 'Medical multiple-choice model'} "
                        f"from {Path(inp.base_model).name or inp.base_model}")
    lora = (inp.config.get("lora") or {}).get("enabled") if llm else None
    card.metadata = {
        "base_model": inp.base_model,
        "library_name": "peft" if lora else "transformers",
        "pipeline_tag": "text-generation" if llm else "multiple-choice",
        "language": ["en"],
        "license": "other",
        "tags": ["medical", "medforge", "sft" if llm else "multiple-choice"] + (["lora"] if lora else []),
        "datasets": [inp.data],
    }
    if inp.evaluation:
        card.metadata["model-index"] = [{"name": Path(inp.base_model).name, "results": [
            {"task": {"type": "text-generation"}, "dataset": {"name": ref, "type": "medinstruct-test"},
             "metrics": [{"type": "win_rate", "value": v}]}
            for ref, v in _win_rates(inp.evaluation).items()]}]
    card.notes.append("Made by medforge's fine-tune job" + ("; evaluation added by the pipeline." if inp.evaluation else "."))
    P = R.plotter(card, plots)  # noqa: N806
    ds = f"[dataset card]({inp.dataset_card})" if inp.dataset_card else "no dataset card found beside the data"
    card.sections.append(("Model", R.md_table(["", ""], [
        ("base model", inp.base_model),
        ("training data", f"`{inp.data}` ({ds})"),
        ("method", ("LoRA " if lora else "full ") + "supervised fine-tuning" if llm else "multiple-choice head, fine-tuned per seed"),
        ("lineage", inp.lineage or "not run by the pipeline"),
    ])))
    res = [R.md_table(["metric", "value"], [(k, v) for k, v in inp.results.items() if not isinstance(v, (list, dict))])]
    for key in ("train_loss", "eval_loss"):
        pts = _loss_points(inp.history, key)
        if pts:
            res += ["", P(key, lambda pts=pts, key=key: R.line_png(pts, key.replace("_", " "), "step" if llm else "epoch", "loss"))]
    card.sections.append(("Training results", "\n".join(res)))
    if inp.evaluation:
        rows = [(ref, v) for ref, v in _win_rates(inp.evaluation).items()]
        card.sections.append(("Evaluation", "Win rate against each reference answer set (pairwise judge, both "
                               "orders; ties count one half):\n\n" + R.md_table(["reference", "win rate"], rows)
                               + "\n\n```json\n" + json.dumps(inp.evaluation, indent=1, default=str)[:4000] + "\n```"))
    else:
        card.sections.append(("Evaluation", "Not evaluated yet. The pipeline adds the results here once it has them."))
    card.sections.append(("Training config", "```json\n" + json.dumps(inp.config, indent=1, default=str) + "\n```"))
    return card


def _win_rates(evaluation: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for ref, v in (evaluation or {}).items():
        out[ref] = v.get("win_rate", v.get("mean")) if isinstance(v, dict) else v
    return out


def write_model_card(export_dir: str | Path, inp: ModelCardInputs) -> Path:
    """``README.md`` (+ plots) and ``model_card.json`` into a local export folder."""
    export_dir = Path(export_dir)
    atomic_write_text(export_dir / INPUTS_FILE, json.dumps(asdict(inp), indent=1, default=str))
    return R.write_card(export_dir, model_card(inp), stem="README")


def update_with_lineage(export_dir: str | Path, lineage_path: str | Path, evaluation: dict[str, Any]) -> Path | None:
    """Add the pipeline's evaluation results to an export's card and render it again (``None`` when the
    export has no ``model_card.json``: not written by this version, or a URI)."""
    export_dir = Path(export_dir)
    saved = export_dir / INPUTS_FILE
    if not saved.is_file():
        return None
    inp = ModelCardInputs(**json.loads(saved.read_text()))
    inp.evaluation, inp.lineage = evaluation, str(lineage_path)
    return write_model_card(export_dir, inp)
