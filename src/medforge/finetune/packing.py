"""Padding and packing collators for causal-LM batches.

A packed row holds several examples back to back. Their ``position_ids`` restart at 0 at each
example, and the batch carries no ``attention_mask``: transformers (5.x) then detects the
packed layout from the position resets and builds a block-diagonal causal mask (SDPA/eager),
or runs flash-attention's varlen kernel (``flash_attention_2``). Labels of each example's
first token are already ``-100`` (see ``prompts.build_example``), so no loss crosses a boundary.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from medforge.finetune.prompts import IGNORE_INDEX

Example = dict[str, list[int]]


def pack_greedy(examples: list[Example], max_length: int) -> list[list[Example]]:
    """First-fit-decreasing bin packing of examples into rows of at most ``max_length`` tokens."""
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    bins: list[list[Example]] = []
    room: list[int] = []
    for i in order:
        n = len(examples[i]["input_ids"])
        for b, free in enumerate(room):
            if n <= free:
                bins[b].append(examples[i])
                room[b] -= n
                break
        else:
            bins.append([examples[i]])
            room.append(max_length - n)
    return bins


def iter_packed_rows(examples: Iterable[Example], max_length: int, buffer_size: int = 256) -> Iterator[list[Example]]:
    """Stream packed rows: pack each buffer of ``buffer_size`` examples with :func:`pack_greedy`."""
    buf: list[Example] = []
    for ex in examples:
        buf.append(ex)
        if len(buf) >= buffer_size:
            yield from pack_greedy(buf, max_length)
            buf = []
    if buf:
        yield from pack_greedy(buf, max_length)


def packed_position_ids(lengths: list[int], total: int) -> list[int]:
    """Positions restarting at 0 for each segment; the padded tail is its own segment."""
    pos: list[int] = []
    for n in lengths:
        pos.extend(range(n))
    pos.extend(range(total - len(pos)))
    return pos


def collate_packed(rows: list[list[Example]], pad_id: int) -> dict[str, Any]:
    """Packed rows -> ``input_ids``, ``labels``, ``position_ids`` (no attention mask); plus ``num_tokens``."""
    import torch

    width = max(sum(len(e["input_ids"]) for e in row) for row in rows)
    ids, labels, pos = [], [], []
    n_tokens = 0
    for row in rows:
        r_ids = [t for e in row for t in e["input_ids"]]
        r_lab = [t for e in row for t in e["labels"]]
        n_tokens += len(r_ids)
        pad = width - len(r_ids)
        ids.append(r_ids + [pad_id] * pad)
        labels.append(r_lab + [IGNORE_INDEX] * pad)
        pos.append(packed_position_ids([len(e["input_ids"]) for e in row], width))
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
        "position_ids": torch.tensor(pos, dtype=torch.long),
        "num_tokens": n_tokens,
    }


def collate_padded(examples: list[Example], pad_id: int) -> dict[str, Any]:
    """Right-padded batch with ``attention_mask``; plus ``num_tokens`` (non-pad tokens)."""
    import torch

    width = max(len(e["input_ids"]) for e in examples)
    ids, labels, mask = [], [], []
    for e in examples:
        pad = width - len(e["input_ids"])
        ids.append(list(e["input_ids"]) + [pad_id] * pad)
        labels.append(list(e["labels"]) + [IGNORE_INDEX] * pad)
        mask.append([1] * len(e["input_ids"]) + [0] * pad)
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
        "attention_mask": torch.tensor(mask, dtype=torch.long),
        "num_tokens": sum(len(e["input_ids"]) for e in examples),
    }
