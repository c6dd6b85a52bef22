"""Deterministic reference-based scores beside the judge: ROUGE-L F1 and embedding cosine similarity.

These are NOT AlpaCare's protocol (which is the pairwise judge); they are a signal that does not
depend on the judge, for runs whose judge is too weak to trust (a laptop's 135M model). Both
compare the model's answer with the reference answer item by item; the mean over items gets a
percentile bootstrap CI (:func:`medforge.evaluate.stats.bootstrap_ci`).

* ROUGE-L F1: the novelty filter's exact kernel (:func:`medforge.rouge.tokenize` and
  :func:`~medforge.rouge.rouge_l_f1`, bit-identical to ``rouge_score`` 0.1.2 without
  stemming).
* Embedding similarity: cosine of mean-pooled, L2-normalised token embeddings (how
  sentence-transformers pools all-MiniLM-L6-v2), from a plain Hugging Face folder loaded with
  ``AutoModel`` (``medforge make-small-models`` builds one offline).

An empty answer scores 0 on both. Pure apart from :func:`embed_texts`, which loads the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from medforge.evaluate.stats import bootstrap_ci
from medforge.rouge import rouge_l_f1, tokenize

NOTE = "reference-based scores beside the judge; not AlpaCare's protocol (which is the pairwise judge)"


def rouge_l(answer: str, reference: str) -> float:
    """ROUGE-L F1 of ``answer`` against ``reference`` with the novelty filter's kernel (0 when either is empty)."""
    return float(rouge_l_f1(tokenize(reference), tokenize(answer)))


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the token vectors where ``mask`` is 1, L2-normalised: ``(batch, seq, dim) -> (batch, dim)``."""
    m = mask[..., None].astype(hidden.dtype)
    pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
    norm = np.linalg.norm(pooled, axis=1, keepdims=True)
    return pooled / np.clip(norm, 1e-12, None)


@lru_cache(maxsize=2)
def _load_encoder(model_dir: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    return tok, model


def embed_texts(model_dir: str, texts: Sequence[str], max_length: int = 256, batch_size: int = 32) -> np.ndarray:
    """Unit-length sentence embeddings of ``texts`` (``(n, dim)``) from a Hugging Face encoder folder, on CPU."""
    import torch

    tok, model = _load_encoder(str(model_dir))
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tok(list(texts[start:start + batch_size]), padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
            hidden = model(**batch).last_hidden_state.float().numpy()
            out.append(mean_pool(hidden, batch["attention_mask"].numpy()))
    return np.concatenate(out) if out else np.zeros((0, model.config.hidden_size), dtype=np.float32)


def cosine_pairs(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Row-wise cosine similarity of two ``(n, dim)`` arrays."""
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    return [float(x) for x in (a * b).sum(axis=1) / np.clip(na * nb, 1e-12, None)]


def score_summary(values: Sequence[float], n_boot: int, seed: int) -> dict[str, Any]:
    """``{n, mean, ci95}`` of per-item scores (bootstrap over items)."""
    return {"n": len(values), "mean": float(np.mean(values)) if len(values) else math.nan,
            "ci95": bootstrap_ci(values, n_boot, seed)}


def reference_scores(pairs: Sequence[tuple[str, str]], n_boot: int = 2000, seed: int = 0, use_rouge: bool = True,
                     embed: Callable[[Sequence[str]], np.ndarray] | None = None) -> dict[str, Any]:
    """The report block for one reference set from ``(answer, reference)`` pairs.

    Args:
        pairs: one per item with an answer (empty answers included: they score 0).
        use_rouge: compute ROUGE-L F1.
        embed: texts -> unit embeddings (e.g. ``functools.partial(embed_texts, folder)``); None: no embedding score.

    Returns:
        ``{"note", "rouge_l": {n, mean, ci95, per_item}, "embedding_cosine": {...}}`` (a score left out is absent).
    """
    out: dict[str, Any] = {"note": NOTE}
    empty = [not a.strip() for a, _ in pairs]
    if use_rouge:
        vals = [0.0 if e else rouge_l(a, r) for (a, r), e in zip(pairs, empty, strict=True)]
        out["rouge_l"] = {**score_summary(vals, n_boot, seed), "per_item": vals}
    if embed is not None:
        vals = []
        if pairs:
            vecs = embed([a for a, _ in pairs] + [r for _, r in pairs])
            cos = cosine_pairs(vecs[:len(pairs)], vecs[len(pairs):])
            vals = [0.0 if e else c for c, e in zip(cos, empty, strict=True)]
        out["embedding_cosine"] = {**score_summary(vals, n_boot, seed), "per_item": vals}
    return out
