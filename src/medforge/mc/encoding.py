"""How a multiple-choice row becomes model input (no Ray, no torch at import).

Each option becomes one pair ``[CLS] question [SEP] option (+ overall_context + option_context) [SEP]``
scored by ``AutoModelForMultipleChoice``. Fine-tuning, evaluation and serving all call these
functions, so a model is scored on exactly the input layout it was trained on.

Input rows: ``id``, ``question``, ``options`` (``{"A": ...}`` or a list, lettered A, B, ...),
``answer`` (a label like ``"A"`` or a 0-based index; optional when scoring), optional
``overall_context`` (str) and ``option_contexts`` (``{"A": str}`` or a list).
"""

from __future__ import annotations

import string
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT_VERSION = 1


@dataclass(frozen=True)
class MCFormat:
    """The input format a multiple-choice model was trained with (saved as ``medforge_mc.json``).

    Attributes:
        max_length: tokens per (question, option) pair.
        use_context: whether ``overall_context`` + the option's context follow each option.
        num_options: options per question in training (the head scores any count; recorded
            so that a caller can warn when it differs).
        labels: the option labels seen in training, in order (e.g. ``["A", "B", "C", "D"]``).
        overflow: what training did with longer pairs (``truncate`` or ``drop``); scoring
            always truncates, since a question cannot be dropped at inference.
        layout: a human-readable description of the pair layout.
    """

    max_length: int
    use_context: bool
    num_options: int
    labels: list[str] = field(default_factory=list)
    overflow: str = "truncate"
    layout: str = "[CLS] question [SEP] option + ' ' + overall_context + ' ' + option_context [SEP]"
    version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MCFormat:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"medforge_mc.json has unknown keys {unknown}; was it written by a newer medforge?")
        missing = sorted(k for k in ("max_length", "use_context", "num_options") if k not in data)
        if missing:
            raise ValueError(f"medforge_mc.json lacks {missing}; re-export the model with medforge finetune-mc")
        return cls(**{**data, "labels": list(data.get("labels") or [])})


def normalize_row(
    row: dict[str, Any], require_answer: bool = True
) -> tuple[str, list[tuple[str, str]], int | None, str, list[str]]:
    """``(question, [(label, text)], answer_index, overall_context, option_contexts)``.

    With ``require_answer=False`` a missing (or ``None``) answer gives ``answer_index=None``.

    Raises:
        ValueError: a row without question/options (or answer when required), or an answer
            that is not an option.
    """
    for key in ("question", "options", *(("answer",) if require_answer else ())):
        if key not in row:
            raise ValueError(f"missing field {key!r}")
    opts = row["options"]
    if isinstance(opts, dict):
        pairs = [(str(k), str(v)) for k, v in opts.items()]
    else:
        pairs = [(string.ascii_uppercase[i], str(v)) for i, v in enumerate(opts)]
    labels = [k for k, _ in pairs]
    ans = row.get("answer")
    idx: int | None
    if ans is None and not require_answer:
        idx = None
    elif isinstance(ans, int) and not isinstance(ans, bool):
        idx = ans
    elif str(ans) in labels:
        idx = labels.index(str(ans))
    else:
        raise ValueError(f"answer {ans!r} is not one of the options {labels}")
    if idx is not None and not 0 <= idx < len(pairs):
        raise ValueError(f"answer index {idx} out of range")
    ctxs = row.get("option_contexts") or {}
    if isinstance(ctxs, dict):
        opt_ctx = [str(ctxs.get(k, "") or "") for k in labels]
    else:
        opt_ctx = [str(c or "") for c in ctxs] + [""] * (len(labels) - len(ctxs))
    return str(row["question"]), pairs, idx, str(row.get("overall_context") or ""), opt_ctx


def option_text(option: str, overall: str, option_ctx: str, use_context: bool) -> str:
    """Second segment of a pair: the option, then (with context) the overall and the option's context."""
    if not use_context:
        return option
    return " ".join(part for part in (option, overall, option_ctx) if part)


def encode_rows(
    rows: list[dict[str, Any]],
    tokenizer: Any,
    use_context: bool,
    max_length: int,
    overflow: str,
    require_answer: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Tokenize rows into per-option pairs; returns ``(encoded, counts)``.

    Each encoded row holds ``id``, ``input_ids`` and ``token_type_ids`` (one list per option),
    ``label`` (answer index, or ``-1`` when unknown and ``require_answer=False``), ``option_labels``
    (the option labels) and ``truncated``. ``counts`` has ``ok``, ``truncated``, ``dropped``
    (over-long rows under ``overflow=drop``).
    """
    out, counts = [], {"ok": 0, "truncated": 0, "dropped": 0}
    for row in rows:
        question, pairs, idx, overall, opt_ctx = normalize_row(row, require_answer)
        seconds = [option_text(t, overall, c, use_context) for (_, t), c in zip(pairs, opt_ctx, strict=True)]
        full = tokenizer([question] * len(seconds), seconds, truncation=False)
        too_long = any(len(x) > max_length for x in full["input_ids"])
        if too_long and overflow == "drop":
            counts["dropped"] += 1
            continue
        enc = tokenizer([question] * len(seconds), seconds, truncation="longest_first", max_length=max_length)
        counts["truncated" if too_long else "ok"] += 1
        out.append(
            {
                "id": str(row.get("id", len(out))),
                "input_ids": [list(x) for x in enc["input_ids"]],
                "token_type_ids": [list(x) for x in enc.get("token_type_ids", [[0] * len(x) for x in enc["input_ids"]])],
                "label": -1 if idx is None else idx,
                "option_labels": [k for k, _ in pairs],
                "truncated": too_long,
            }
        )
    return out, counts


def collate_mc(rows: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Pad ``[batch, num_choices, seq]``; ``num_tokens`` counts non-pad tokens.

    Every row in a batch must have the same number of options.
    """
    import torch

    width = max(len(x) for r in rows for x in r["input_ids"])
    ids, tt, mask = [], [], []
    n_tokens = 0
    for r in rows:
        ids.append([list(x) + [pad_id] * (width - len(x)) for x in r["input_ids"]])
        tt.append([list(x) + [0] * (width - len(x)) for x in r["token_type_ids"]])
        mask.append([[1] * len(x) + [0] * (width - len(x)) for x in r["input_ids"]])
        n_tokens += sum(len(x) for x in r["input_ids"])
    return {
        "input_ids": torch.tensor(ids),
        "token_type_ids": torch.tensor(tt),
        "attention_mask": torch.tensor(mask),
        "labels": torch.tensor([r["label"] for r in rows]),
        "num_tokens": n_tokens,
    }
