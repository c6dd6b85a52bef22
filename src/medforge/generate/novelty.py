"""Exact, fast ROUGE-L novelty filter (self-instruct / AlpaCare).

A candidate instruction is kept only if its ROUGE-L F-measure against every instruction kept
so far (seeds included) is ``<= threshold``; a score ``> threshold`` rejects. Decisions are
greedy in candidate order and identical to a reference loop that calls ``rouge_score`` 0.1.2
(default tokenizer, no stemming) on every pair.

How it is fast without changing a single decision (details and proofs in ``docs/novelty.md``):

* Tokens are mapped to integer ids; each instruction becomes a *multiset* of elements
  ``(token, occurrence#)`` so that multiset overlap is a plain set intersection.
* For lengths ``m``, ``n`` let ``L(m, n)`` be the smallest LCS length whose F-measure, computed
  with rouge_score's own float expression, exceeds the threshold. A pair can only reject if
  ``LCS >= L(m, n)``, and ``LCS <= multiset overlap``; so pairs with ``L(m, n) > min(m, n)``
  (length filter) or overlap ``< L(m, n)`` cannot reject.
* Overlap candidates are found with prefix filtering (set-similarity joins): under one global
  element order (rarest first), two records with overlap ``>= a`` must share an element within
  their first ``len - a + 1`` elements. A positional bound (ppjoin) prunes further.
* Pairs past those bounds get their exact multiset overlap (a merge of the rank-sorted element
  lists after the last prefix match) and are dropped if it is ``< L(m, n)``; the rest are
  verified with a bit-parallel LCS (Allison-Dix / Hyyro, 64-bit words) on token ids and scored
  with rouge_score's float formula. Candidates are decided one by one in a numba kernel
  (``_novelty_kernels.decide_batch``), so an in-batch record is only compared once kept.

Because every pair that can score above the threshold is verified exactly, decisions are exact,
and ``best_score``/``nearest_id`` are exact for every rejected candidate. For a kept candidate
they describe the best pair among the verified survivors (a lower bound on the true maximum,
which is itself ``<= threshold``); computing the true maximum below the threshold would need
every pair and defeat the pruning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medforge.rouge import tokenize

logger = logging.getLogger(__name__)

# Lengths below this use a precomputed L(m, n) table instead of the float scan.
_TABLE = 256


def _f_vec(lcs: np.ndarray, m: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Vectorised :func:`medforge.rouge.f_measure`: the same IEEE-754 double operations in the same order."""
    lcs = lcs.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = lcs / n
        r = lcs / m
        s = p + r
        f = 2 * p * r / s
    return np.where((s > 0) & (m > 0) & (n > 0), f, 0.0)


def _min_rejecting_lcs(m: np.ndarray, n: np.ndarray, threshold: float) -> np.ndarray:
    """Smallest LCS ``l`` with rouge F(l, m, n) > threshold; ``min(m, n) + 1`` if none exists.

    Mathematically F = 2l / (m + n), so the answer is floor(t(m+n)/2) + 1; float rounding can move
    it by at most one, so scanning a small window around that value with the exact float
    expression yields the exact integer for the float comparison rouge_score's users make.
    """
    m = np.asarray(m, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    cap = np.minimum(m, n)
    out = cap + 1
    base = np.floor(threshold * (m + n) / 2.0).astype(np.int64) - 2
    found = np.zeros(m.shape, dtype=bool)
    for k in range(6):
        lcs = np.maximum(base + k, 1)
        hit = (~found) & (lcs <= cap) & (_f_vec(lcs, m, n) > threshold)
        out = np.where(hit, lcs, out)
        found |= hit
    return out


@dataclass(frozen=True)
class NoveltyDecision:
    """Outcome for one candidate.

    Attributes:
        keep: True if no kept instruction scores above the threshold.
        best_score: Highest ROUGE-L F found (exact whenever ``keep`` is False).
        nearest_id: Id of the kept instruction with ``best_score`` (earliest on ties), or None.
    """

    keep: bool
    best_score: float
    nearest_id: str | None


@dataclass
class _Encoded:
    """A batch of tokenised records in the filter's integer representation."""

    lengths: np.ndarray  # int64 [b]
    toks: np.ndarray  # int64 flat token ids in text order, grouped by record
    elems: np.ndarray  # int64 flat element ids aligned with toks
    ptr: np.ndarray  # int64 [b+1] offsets into toks / elems


class NoveltyFilter:
    """Greedy incremental ROUGE-L filter holding the accepted pool.

    Not thread-safe; wrap it in a Ray actor (``make_novelty_actor``) to share it between
    generation workers, which serialises calls.

    Args:
        threshold: A candidate whose ROUGE-L F against any pool member is ``> threshold`` is
            rejected. Must lie in ``[0, 1]``.
        workers: Accepted for backward compatibility and ignored: verification now runs in a
            single-threaded numba kernel (it used to size rapidfuzz's thread pool).
        sub_batch: Candidates judged per internal step (a tuning knob; decisions never depend
            on it).
    """

    def __init__(self, threshold: float = 0.7, workers: int = -1, sub_batch: int = 2048):
        if not (0.0 <= float(threshold) <= 1.0) or math.isnan(threshold):
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
        self.threshold = float(threshold)
        self.workers = workers
        self.sub_batch = max(1, int(sub_batch))
        self._need_table = _min_rejecting_lcs(
            *np.meshgrid(np.arange(_TABLE), np.arange(_TABLE), indexing="ij"), self.threshold
        ).astype(np.int64)
        self._ids: list[str] = []
        self._vocab: dict[str, int] = {}
        self._elem_of: dict[int, int] = {}  # (token id << 32 | occurrence) -> element id
        self._rank = np.zeros(0, dtype=np.int64)  # element id -> global order (rarest first)
        self._next_new_rank = -1  # elements first seen after a re-rank count as rarest
        # Pool storage. Records [0, _n_main) are in the main index; the rest form the delta.
        self._pool_lengths = np.zeros(0, dtype=np.int64)
        self._pool_toks = np.zeros(0, dtype=np.int64)
        self._pool_elems = np.zeros(0, dtype=np.int64)
        self._pool_sranks = np.zeros(0, dtype=np.int64)  # per record: element ranks, sorted
        self._pool_ptr = np.zeros(1, dtype=np.int64)
        self._n_main = 0
        z = np.zeros(0, dtype=np.int64)
        self._main_index: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] = (z, np.zeros(1, np.int64), z, z)
        self._alpha_cache: dict[int, int] = {}
        self.stats = {
            "candidates": 0,
            "kept": 0,
            "reference_pairs": 0,
            "candidate_pairs": 0,
            "verified_pairs": 0,
        }

    # ------------------------------------------------------------------ public API

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> list[str]:
        """Ids of the pool in insertion order (seeds first)."""
        return list(self._ids)

    def add(self, texts: Sequence[str], ids: Sequence[str]) -> None:
        """Add to the pool unconditionally (seeds; replay on resume).

        Args:
            texts: Instructions.
            ids: One id per text.
        """
        texts, ids = self._check_inputs(texts, ids)
        if not texts:
            return
        enc = self._encode(texts)
        _, sranks = self._sorted_ranks(enc.elems, enc.ptr, enc.lengths)
        self._append(enc, sranks, np.arange(len(texts)), ids)

    def filter(self, texts: Sequence[str], ids: Sequence[str]) -> list[NoveltyDecision]:
        """Decide each candidate in order; kept ones join the pool before the next is judged.

        Args:
            texts: Candidate instructions.
            ids: One id per candidate (recorded as ``nearest_id`` for later candidates).

        Returns:
            One decision per candidate, in order.
        """
        texts, ids = self._check_inputs(texts, ids)
        out: list[NoveltyDecision] = []
        # Sub-batches bound the temporary index (delta + batch) and the per-batch arrays.
        for a in range(0, len(texts), self.sub_batch):
            out.extend(self._filter_batch(texts[a : a + self.sub_batch], ids[a : a + self.sub_batch]))
        return out

    def _filter_batch(self, texts: list[str], ids: list[str]) -> list[NoveltyDecision]:
        # numba is heavy to import and its kernels compile on first use: only once a filter runs
        from medforge.generate import _novelty_kernels as nk

        b = len(texts)
        if b == 0:
            return []
        enc = self._encode(texts)
        n_pool = len(self._ids)
        if b + (n_pool - self._n_main) > max(256, self._n_main // 4):
            self._rebuild(extra=enc)
        b_order, b_sranks = self._sorted_ranks(enc.elems, enc.ptr, enc.lengths)
        b_rank, b_pos, b_rec = self._prefix_entries(b_sranks, enc.ptr, enc.lengths)
        p_ptr = np.zeros(b + 1, dtype=np.int64)
        np.cumsum(np.bincount(b_rec, minlength=b), out=p_ptr[1:])

        # Temporary index over the delta of the pool plus the batch (global record numbers);
        # the kernel only uses a batch record once it has been kept.
        lo = self._pool_ptr[self._n_main]
        d_ptr = self._pool_ptr[self._n_main :] - lo
        d_len = self._pool_lengths[self._n_main :]
        t_rank, t_pos, t_rec = self._prefix_entries(self._pool_sranks[lo:], d_ptr, d_len)
        t_index = self._make_index(
            np.concatenate([t_rank, b_rank]),
            np.concatenate([t_rec + self._n_main, b_rec + n_pool]),
            np.concatenate([t_pos, b_pos]),
        )
        all_len = np.concatenate([self._pool_lengths, enc.lengths])
        all_ptr = np.concatenate([self._pool_ptr, self._pool_ptr[-1] + enc.ptr[1:]])
        kept, best, nearest, counters = nk.decide_batch(
            n_pool,
            *self._main_index,
            *t_index,
            p_ptr,
            b_rank,
            b_pos,
            all_len,
            all_ptr,
            np.concatenate([self._pool_sranks, b_sranks]),
            np.concatenate([self._pool_toks, enc.toks]),
            self._need_table,
            self.threshold,
            max(1, len(self._vocab)),
        )

        ref_pairs = b * n_pool + int(np.cumsum(kept)[:-1].sum())
        self.stats["candidates"] += b
        self.stats["kept"] += int(kept.sum())
        self.stats["reference_pairs"] += ref_pairs
        self.stats["candidate_pairs"] += int(counters[1])
        self.stats["verified_pairs"] += int(counters[2])
        pool_ids = self._ids
        out = []
        for kp, s, nid in zip(kept.tolist(), best.tolist(), nearest.tolist(), strict=True):
            if nid < 0:
                near = None
            elif nid < n_pool:
                near = pool_ids[nid]
            else:
                near = ids[nid - n_pool]
            out.append(NoveltyDecision(keep=kp, best_score=s, nearest_id=near))
        rows = np.flatnonzero(kept)
        self._append(enc, b_sranks, rows, [ids[k] for k in rows.tolist()])
        logger.debug("filtered %d candidates: kept %d, verified %d pairs", b, len(rows), counters[2])
        return out

    # ------------------------------------------------------------------ encoding

    @staticmethod
    def _check_inputs(texts: Sequence[str], ids: Sequence[str]) -> tuple[list[str], list[str]]:
        texts = list(texts)
        ids = [str(x) for x in ids]
        if len(texts) != len(ids):
            raise ValueError(f"{len(texts)} texts but {len(ids)} ids")
        for k, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text #{k} is {type(t).__name__}, expected str")
        return texts, ids

    def _encode(self, texts: list[str]) -> _Encoded:
        vocab = self._vocab
        tok_ids: list[int] = []
        lengths = np.empty(len(texts), dtype=np.int64)
        for k, text in enumerate(texts):
            toks = tokenize(text)
            lengths[k] = len(toks)
            for t in toks:
                v = vocab.get(t)
                if v is None:
                    v = vocab[t] = len(vocab)
                tok_ids.append(v)
        tok = np.asarray(tok_ids, dtype=np.int64)
        ptr = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(lengths, out=ptr[1:])
        rec = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)

        # Occurrence number of each token within its record turns multisets into sets.
        order = np.lexsort((tok, rec))
        key_sorted = rec[order] * (1 << 32) + tok[order]  # only used for grouping equal tokens
        new_group = np.ones(len(order), dtype=bool)
        new_group[1:] = key_sorted[1:] != key_sorted[:-1]
        group_start = np.maximum.accumulate(np.where(new_group, np.arange(len(order)), 0))
        occ = np.empty(len(order), dtype=np.int64)
        occ[order] = np.arange(len(order)) - group_start
        keys = (tok << 32) | occ
        uniq, inv = np.unique(keys, return_inverse=True)
        elem_of = self._elem_of
        n_before = len(elem_of)
        uid = np.empty(len(uniq), dtype=np.int64)
        for k, key in enumerate(uniq.tolist()):
            e = elem_of.get(key)
            if e is None:
                e = elem_of[key] = len(elem_of)
            uid[k] = e
        elems = uid[inv.reshape(-1)] if len(keys) else np.zeros(0, dtype=np.int64)
        n_new = len(elem_of) - n_before
        if n_new:
            # New elements are rarer than everything ranked so far (any fixed total order keeps
            # prefix filtering exact; this one just keeps prefixes selective).
            new_ranks = np.arange(self._next_new_rank, self._next_new_rank - n_new, -1)
            self._next_new_rank -= n_new
            self._rank = np.concatenate([self._rank, new_ranks.astype(np.int64)])
        return _Encoded(lengths=lengths, toks=tok, elems=elems, ptr=ptr)

    def _append(self, enc: _Encoded, sranks: np.ndarray, rows: np.ndarray, ids: list[str]) -> None:
        """Append the given rows of an encoded batch to the pool (delta part)."""
        if len(rows) == 0:
            return
        rows = np.asarray(rows, dtype=np.int64)
        lens = enc.lengths[rows]
        starts = enc.ptr[rows]
        idx = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(
            int(lens.sum())
        )
        self._pool_toks = np.concatenate([self._pool_toks, enc.toks[idx]])
        self._pool_elems = np.concatenate([self._pool_elems, enc.elems[idx]])
        self._pool_sranks = np.concatenate([self._pool_sranks, sranks[idx]])
        self._pool_ptr = np.concatenate([self._pool_ptr, self._pool_ptr[-1] + np.cumsum(lens)])
        self._pool_lengths = np.concatenate([self._pool_lengths, lens])
        self._ids.extend(ids)

    # ------------------------------------------------------------------ index

    def _alpha_min(self, lengths: np.ndarray) -> np.ndarray:
        """Per length n: min over partner lengths m of L(m, n), a safe overlap lower bound."""
        out = np.empty(len(lengths), dtype=np.int64)
        uniq, inv = np.unique(lengths, return_inverse=True)
        vals = np.empty(len(uniq), dtype=np.int64)
        for k, n in enumerate(uniq.tolist()):
            a = self._alpha_cache.get(n)
            if a is None:
                if n == 0:
                    a = 1
                else:
                    # Partners longer than n need at least L(n, n) (F falls as m grows), so
                    # m in [1, n] covers every case.
                    m = np.arange(1, n + 1, dtype=np.int64)
                    need = _min_rejecting_lcs(m, np.full_like(m, n), self.threshold)
                    feasible = need <= m
                    # No feasible partner (threshold 1.0): empty prefix, never a candidate.
                    a = int(need[feasible].min()) if feasible.any() else n + 1
                self._alpha_cache[n] = a
            vals[k] = a
        out[:] = vals[inv.reshape(-1)]
        return out

    def _sorted_ranks(
        self, elems: np.ndarray, ptr: np.ndarray, lengths: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each record's element ranks under the current global order, sorted within the record.

        Returns the permutation applied (indices into ``elems``) and the sorted ranks.
        """
        if len(elems) == 0:
            z = np.zeros(0, dtype=np.int64)
            return z, z
        rec = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        rank = self._rank[elems]
        order = np.lexsort((rank, rec))
        return order, rank[order]

    def _prefix_entries(
        self, sranks: np.ndarray, ptr: np.ndarray, lengths: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rank, position, record) of each record's prefix, from its sorted ranks."""
        if len(sranks) == 0:
            z = np.zeros(0, dtype=np.int64)
            return z, z, z
        rec = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        pos = np.arange(len(sranks), dtype=np.int64) - ptr[rec]
        prefix_len = lengths - self._alpha_min(lengths) + 1
        keep = pos < prefix_len[rec]
        return sranks[keep], pos[keep], rec[keep]

    @staticmethod
    def _make_index(
        rank: np.ndarray, rec: np.ndarray, pos: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Inverted index: unique ranks, their posting starts, and postings (record, position).

        Postings of one rank are in increasing record order (the kernel relies on nothing else).
        """
        order = np.argsort(rank, kind="stable")
        rank, rec, pos = rank[order], rec[order], pos[order]
        uniq, starts = np.unique(rank, return_index=True)
        starts = np.append(starts, len(rank)).astype(np.int64)
        return uniq.astype(np.int64), starts, rec.astype(np.int64), pos.astype(np.int64)

    def _rebuild(self, extra: _Encoded | None = None) -> None:
        """Re-rank elements by document frequency and index the whole pool anew."""
        n_elem = len(self._elem_of)
        counts = np.bincount(self._pool_elems, minlength=n_elem)
        if extra is not None and len(extra.elems):
            counts = counts + np.bincount(extra.elems, minlength=n_elem)
        order = np.lexsort((np.arange(n_elem), counts))
        rank = np.empty(n_elem, dtype=np.int64)
        rank[order] = np.arange(n_elem, dtype=np.int64)
        self._rank = rank
        self._next_new_rank = -1
        self._n_main = len(self._ids)
        _, self._pool_sranks = self._sorted_ranks(self._pool_elems, self._pool_ptr, self._pool_lengths)
        r, p, rec = self._prefix_entries(self._pool_sranks, self._pool_ptr, self._pool_lengths)
        self._main_index = self._make_index(r, rec, p)
        logger.debug("rebuilt novelty index over %d records, %d elements", self._n_main, n_elem)


def make_novelty_actor(
    threshold: float = 0.7,
    *,
    seed_texts: Sequence[str] = (),
    seed_ids: Sequence[str] = (),
    num_cpus: float = 2,
    **options: Any,
):
    """Start a Ray actor holding a ``NoveltyFilter`` that generation workers stream into.

    Ray runs an actor's method calls one at a time, so concurrent ``filter.remote`` calls are
    decided greedily in arrival order, exactly like sequential calls on one filter.

    Args:
        threshold: Rejection threshold (``> threshold`` rejects).
        seed_texts: Instructions added unconditionally before any candidate.
        seed_ids: Ids for ``seed_texts``.
        num_cpus: CPUs reserved for the actor (LCS verification uses threads).
        **options: Extra ``ray.actor.ActorClass.options`` (name, lifetime, ...).

    Returns:
        An actor handle exposing ``add``, ``filter``, ``__len__`` (as ``size``) and ``get_stats``.
    """
    import ray  # lazy: the module must import without Ray

    actor_cls = ray.remote(_NoveltyActor).options(num_cpus=num_cpus, **options)
    handle = actor_cls.remote(threshold)
    if len(seed_texts):
        ray.get(handle.add.remote(list(seed_texts), list(seed_ids)))
    return handle


class _NoveltyActor(NoveltyFilter):
    """Actor body: Ray cannot call dunder methods remotely, so expose size/stats explicitly."""

    def size(self) -> int:
        return len(self)

    def get_stats(self) -> dict[str, int]:
        return dict(self.stats)
