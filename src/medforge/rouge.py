"""ROUGE-L exactly as ``rouge_score`` 0.1.2 computes it (default tokenizer, no stemming, beta = 1).

One definition of the tokenizer, the LCS and the F-measure for everything that compares texts by
ROUGE-L: the novelty filter
(:mod:`medforge.generate.novelty`), the reply checks (:mod:`medforge.generate.response_checks`),
the reference-based scores of the evaluation (:mod:`medforge.evaluate.refscores`) and the dataset
card's novelty profile (:mod:`medforge.cards.instructions`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Tokenise exactly like rouge_score 0.1.2's default tokenizer without stemming.

    rouge_score lowercases (Unicode-aware, so e.g. ``"İ"`` becomes ``"i"`` plus a combining dot),
    replaces every run outside ``[a-z0-9]`` with a space, splits on ``\\s+`` and keeps tokens
    matching ``^[a-z0-9]+$``. After the substitution only ``[a-z0-9 ]`` remain, so that final
    regex only drops the empty strings produced at the edges, which ``str.split()`` never makes.

    Args:
        text: Any string.

    Returns:
        The token list rouge_score would produce.
    """
    return _NON_ALNUM.sub(" ", text.lower()).split()


def lcs_length(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Length of the longest common subsequence of two token sequences."""
    from rapidfuzz.distance import LCSseq

    return int(LCSseq.similarity(list(a), list(b)))


def f_measure(lcs: int, m: int, n: int) -> float:
    """rouge_score's ``_score_lcs`` float expression (beta = 1) for an LCS of length ``lcs`` between a
    target of ``m`` tokens and a prediction of ``n``; symmetric in ``m``, ``n`` bit for bit."""
    if m == 0 or n == 0:
        return 0.0
    precision = lcs / n
    recall = lcs / m
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def rouge_l_f1(a: Sequence[str], b: Sequence[str]) -> float:
    """ROUGE-L F-measure of two token lists (:func:`tokenize`), exactly as rouge_score computes it.

    Args:
        a: Target tokens.
        b: Prediction tokens.

    Returns:
        The F-measure; 0.0 if either side is empty. Symmetric in ``a`` and ``b``.
    """
    if not a or not b:
        return 0.0
    return f_measure(lcs_length(a, b), len(a), len(b))

