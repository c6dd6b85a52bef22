"""ROUGE-L novelty filter (self-instruct / AlpaCare): keep a candidate only if its ROUGE-L F1
against every instruction kept so far (seeds included) is <= threshold.

PLACEHOLDER: a straightforward exact implementation. Issue 3 replaces the internals with the
fast pruned + bit-parallel version; the public interface below stays.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """rouge_score's default tokenizer: lowercase, non [a-z0-9] -> space, split, no stemming."""
    return _NON_ALNUM.sub(" ", text.lower()).split()


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l_f1(a: Sequence[str], b: Sequence[str]) -> float:
    """ROUGE-L F-measure exactly as rouge_score computes it (beta=1)."""
    if not a or not b:
        return 0.0
    lcs = _lcs(a, b)
    if lcs == 0:
        return 0.0
    p, r = lcs / len(b), lcs / len(a)
    return 2 * p * r / (p + r)


@dataclass(frozen=True)
class NoveltyDecision:
    keep: bool
    best_score: float
    nearest_id: str | None


class NoveltyFilter:
    """Greedy incremental filter holding the accepted pool."""

    def __init__(self, threshold: float = 0.7):
        self.threshold = threshold
        self._tokens: list[list[str]] = []
        self._ids: list[str] = []

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, texts: Sequence[str], ids: Sequence[str]) -> None:
        """Add to the pool unconditionally (seeds; replay on resume)."""
        for text, id_ in zip(texts, ids, strict=True):
            self._tokens.append(tokenize(text))
            self._ids.append(str(id_))

    def filter(self, texts: Sequence[str], ids: Sequence[str]) -> list[NoveltyDecision]:
        """Decide each candidate in order; kept ones join the pool before the next is judged."""
        out = []
        for text, id_ in zip(texts, ids, strict=True):
            toks = tokenize(text)
            best, nearest = 0.0, None
            for other, oid in zip(self._tokens, self._ids):
                s = rouge_l_f1(toks, other)
                if s > best:
                    best, nearest = s, oid
            keep = best <= self.threshold
            if keep:
                self._tokens.append(toks)
                self._ids.append(str(id_))
            out.append(NoveltyDecision(keep, best, nearest))
        return out
