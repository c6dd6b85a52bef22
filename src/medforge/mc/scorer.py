"""Load an exported multiple-choice model and score rows with it, outside Ray Train.

An export (written by :func:`save_mc_export`, at the end of ``medforge finetune-mc``) is a
Hugging Face folder: ``AutoModelForMultipleChoice`` weights + config, the tokenizer, and
``medforge_mc.json`` (:class:`~medforge.mc.encoding.MCFormat`: the input format it was trained
with). Usage::

    from medforge.mc.scorer import load_mc_model, score_rows

    mc = load_mc_model("runs/finetune_mc_tiny/model")
    [res] = score_rows(mc, [{"question": "...", "options": {"A": "...", "B": "..."},
                             "overall_context": "...", "option_contexts": {"A": "...", "B": "..."}}])
    res["prediction"], res["probs"]   # "B", {"A": 0.31, "B": 0.69}

Rows are encoded by :func:`medforge.mc.encoding.encode_rows` (the training code), so a row is
scored on the same token ids it would have been trained on.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medforge.mc.encoding import MCFormat, collate_mc, encode_rows

logger = logging.getLogger(__name__)

FORMAT_FILE = "medforge_mc.json"


@dataclass
class MCModel:
    """A loaded export: the torch model (eval mode), its tokenizer and its training format."""

    model: Any
    tokenizer: Any
    format: MCFormat
    path: str
    device: str = "cpu"

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id or 0


def read_mc_format(path: str | Path) -> MCFormat:
    """The ``medforge_mc.json`` of an export folder.

    Raises:
        FileNotFoundError: the folder is not a medforge multiple-choice export (names the fix).
        ValueError: the file is malformed.
    """
    f = Path(path) / FORMAT_FILE
    if not f.is_file():
        raise FileNotFoundError(
            f"{path} has no {FORMAT_FILE}: not a medforge multiple-choice export; "
            "point at the 'model' folder that medforge finetune-mc writes into its output_dir"
        )
    try:
        return MCFormat.from_json(json.loads(f.read_text()))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{f} is not valid JSON ({exc.msg}); re-export the model") from None


def load_mc_model(path: str | Path, device: str | None = None) -> MCModel:
    """Load an export folder for scoring (eval mode, fp32 on CPU).

    Args:
        path: the export folder (holds ``config.json``, weights, tokenizer, ``medforge_mc.json``).
        device: ``"cpu"``, ``"cuda"``...; default: CUDA when available.
    """
    import torch
    from transformers import AutoModelForMultipleChoice, AutoTokenizer

    fmt = read_mc_format(path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForMultipleChoice.from_pretrained(str(path), dtype=torch.float32).to(device)
    model.eval()
    tok = AutoTokenizer.from_pretrained(str(path))
    return MCModel(model=model, tokenizer=tok, format=fmt, path=str(path), device=device)


def score_rows(
    mc: MCModel, rows: list[dict[str, Any]], batch_size: int = 16, use_context: bool | None = None
) -> list[dict[str, Any]]:
    """Per-option probabilities and the predicted option for each row.

    Args:
        mc: from :func:`load_mc_model`.
        rows: multiple-choice rows (see :mod:`medforge.mc.encoding`); ``answer`` is optional.
        batch_size: rows per forward pass (rows of different option counts go in separate passes).
        use_context: override the export's ``use_context`` (e.g. to score a context-trained
            model without context); ``None``: as trained.

    Returns:
        One dict per row, in order: ``id``, ``probs`` (``{label: p}``, summing to 1),
        ``prediction`` (label), ``answer`` (label or ``None``), ``correct`` (bool or ``None``),
        ``truncated`` (a pair was cut at ``max_length``).

    Raises:
        ValueError: a row without question/options, or with an answer that is not an option.
    """
    import torch

    ctx = mc.format.use_context if use_context is None else use_context
    enc, _ = encode_rows(rows, mc.tokenizer, ctx, mc.format.max_length, "truncate", require_answer=False)
    results: list[dict[str, Any] | None] = [None] * len(enc)
    by_width: dict[int, list[int]] = {}
    for i, e in enumerate(enc):
        by_width.setdefault(len(e["input_ids"]), []).append(i)
    with torch.no_grad():
        for idxs in by_width.values():
            for start in range(0, len(idxs), batch_size):
                chunk = idxs[start : start + batch_size]
                batch = collate_mc([enc[i] for i in chunk], mc.pad_id)
                inputs = {k: batch[k].to(mc.device) for k in ("input_ids", "token_type_ids", "attention_mask")}
                probs = torch.softmax(mc.model(**inputs).logits.float(), dim=-1).cpu().tolist()
                for i, p in zip(chunk, probs, strict=True):
                    e = enc[i]
                    labels = e["option_labels"]
                    best = max(range(len(p)), key=p.__getitem__)
                    answer = labels[e["label"]] if e["label"] >= 0 else None
                    results[i] = {
                        "id": e["id"],
                        "probs": dict(zip(labels, p, strict=True)),
                        "prediction": labels[best],
                        "answer": answer,
                        "correct": None if answer is None else labels[best] == answer,
                        "truncated": e["truncated"],
                    }
    return [r for r in results if r is not None]


def save_mc_export(out_dir: str | Path, model: Any, tokenizer: Any, fmt: MCFormat,
                   state_dict: dict[str, Any] | None = None) -> Path:
    """Write an export folder atomically (a temp folder renamed into place).

    Args:
        out_dir: the export folder; an existing one is replaced.
        model: a ``PreTrainedModel`` with a multiple-choice head (its config is saved).
        tokenizer: saved beside it.
        fmt: the training input format, saved as ``medforge_mc.json``.
        state_dict: weights to save instead of ``model``'s own (e.g. gathered from ZeRO-3).
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / FORMAT_FILE).write_text(json.dumps(fmt.to_json(), indent=2))
        os.chmod(tmp, 0o755)
        old = out.with_name(f".{out.name}.old")
        if out.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
