"""Numba kernels of the novelty filter (see ``novelty.py`` and ``docs/novelty.md``).

Compiled on first use and cached on disk (``cache=True``), so the JIT cost is paid once per
machine and source version. Every float expression here repeats rouge_score's operations in the
same order on IEEE-754 doubles (numba does not enable fast-math unless asked), so scores are
bit-identical to ``rouge_score.rouge_scorer._score_lcs``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_U1 = np.uint64(1)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


@njit(cache=True, inline="always")
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return (x * _H01) >> np.uint64(56)


@njit(cache=True, inline="always")
def _f(lcs, m, n):
    """rouge_score ``_score_lcs`` F-measure (beta 1): precision = lcs/n, recall = lcs/m."""
    if m == 0 or n == 0:
        return 0.0
    lf = float(lcs)
    p = lf / n
    r = lf / m
    s = p + r
    if s > 0:
        return 2 * p * r / s
    return 0.0


@njit(cache=True)
def need_scalar(m, n, t):
    """Smallest LCS with F > t (``min(m, n) + 1`` if none); same scan as ``_min_rejecting_lcs``."""
    cap = min(m, n)
    base = np.int64(math.floor(t * (m + n) / 2.0)) - 2
    for k in range(6):
        lcs = max(base + k, 1)
        if lcs <= cap and m > 0 and n > 0 and _f(lcs, m, n) > t:
            return lcs
    return cap + 1


@njit(cache=True)
def lcs_pairs(toks, ptr, qa, qb, vocab_size):
    """LCS of token-id records ``qa[k]`` and ``qb[k]`` (bit-parallel; for tests and tools)."""
    out = np.zeros(len(qa), dtype=np.int64)
    loc = np.full(vocab_size, -1, dtype=np.int64)
    max_len = 0
    for r in range(len(ptr) - 1):
        max_len = max(max_len, ptr[r + 1] - ptr[r])
    w_max = (max_len + 63) // 64
    pm = np.zeros(max(1, max_len * w_max), dtype=np.uint64)
    uniq = np.zeros(max(1, max_len), dtype=np.int64)
    v = np.empty(max(1, w_max), dtype=np.uint64)
    for k in range(len(qa)):
        a, b = qa[k], qb[k]
        nu = _build_pm(toks, ptr[a], ptr[a + 1], loc, pm, uniq)
        out[k] = _lcs_with_pm(toks, ptr[b], ptr[b + 1], ptr[a + 1] - ptr[a], loc, pm, v)
        for u in range(nu):
            loc[uniq[u]] = -1
    return out


@njit(cache=True, inline="always")
def _build_pm(toks, a0, a1, loc, pm, uniq):
    """Match masks of record ``toks[a0:a1]`` per distinct token (local ids in ``loc``)."""
    m = a1 - a0
    w = (m + 63) // 64
    nu = 0
    for k in range(m):
        tok = toks[a0 + k]
        lid = loc[tok]
        if lid < 0:
            lid = nu
            loc[tok] = nu
            uniq[nu] = tok
            for x in range(w):
                pm[nu * w + x] = 0
            nu += 1
        pm[lid * w + (k >> 6)] |= _U1 << np.uint64(k & 63)
    return nu


@njit(cache=True, inline="always")
def _lcs_with_pm(toks, b0, b1, m, loc, pm, v):
    """Allison-Dix / Hyyro bit-parallel LCS of the masked record (length m) and ``toks[b0:b1]``."""
    w = (m + 63) // 64
    if w == 1:
        vv = _ALL
        for k in range(b0, b1):
            lid = loc[toks[k]]
            if lid >= 0:
                u = vv & pm[lid]
                vv = (vv + u) | (vv - u)
        if m < 64:
            vv |= _ALL << np.uint64(m)
        return np.int64(_popcount(~vv))
    for x in range(w):
        v[x] = _ALL
    for k in range(b0, b1):
        lid = loc[toks[k]]
        if lid < 0:
            continue
        carry = np.uint64(0)
        base = lid * w
        for x in range(w):
            vx = v[x]
            u = vx & pm[base + x]
            s1 = vx + u
            c1 = s1 < vx
            s2 = s1 + carry
            c2 = s2 < s1
            v[x] = s2 | (vx - u)
            carry = np.uint64(1) if (c1 or c2) else np.uint64(0)
    total = np.int64(0)
    for x in range(w):
        vx = v[x]
        if x == w - 1 and (m & 63) != 0:
            vx |= _ALL << np.uint64(m & 63)
        total += np.int64(_popcount(~vx))
    return total


@njit(cache=True, inline="always")
def _probe(uniq, starts, irec, ipos, r, p, gj, n_pool, kept, check_batch, cnt, lastp, lastq, touched, nt):
    if len(uniq) == 0:
        return nt
    k = np.searchsorted(uniq, r)
    if k >= len(uniq) or uniq[k] != r:
        return nt
    for t in range(starts[k], starts[k + 1]):
        i = irec[t]
        if check_batch:
            if i >= gj:
                continue
            if i >= n_pool and not kept[i - n_pool]:
                continue
        if cnt[i] == 0:
            touched[nt] = i
            nt += 1
        cnt[i] += 1
        lastp[i] = p
        lastq[i] = ipos[t]
    return nt


@njit(cache=True)
def decide_batch(
    n_pool,
    m_uniq,
    m_starts,
    m_rec,
    m_pos,
    t_uniq,
    t_starts,
    t_rec,
    t_pos,
    p_ptr,
    p_rank,
    p_pos,
    lengths,
    ptr,
    sranks,
    toks,
    need_tab,
    threshold,
    vocab_size,
):
    """Greedy decisions for batch records ``n_pool ..`` (global numbering) in order.

    Per candidate ``j``: accumulate prefix matches over the main index (pool records
    ``[0, n_main)``) and the temporary index (the rest of the pool and the batch records before
    ``j`` that were kept), then for each touched record ``i`` apply, in order of cost, the length
    filter, the positional bound, the exact multiset overlap (merge of the rank-sorted element
    lists after the last prefix match) and finally the exact LCS. ``j`` is rejected iff some
    verified pair scores ``> threshold``; it then joins the candidates of later ``j``.

    Returns ``kept``, ``best`` score and ``nearest`` global index per candidate (among verified
    pairs: highest score, smallest index on ties) and counters ``[touched pairs, pairs past the
    length+positional filters, pairs past the overlap filter (= LCS computed)]``.
    """
    b = len(p_ptr) - 1
    n_total = n_pool + b
    tab = need_tab.shape[0]
    kept = np.zeros(b, dtype=np.bool_)
    best = np.zeros(b, dtype=np.float64)
    nearest = np.full(b, -1, dtype=np.int64)
    counters = np.zeros(3, dtype=np.int64)
    cnt = np.zeros(n_total, dtype=np.int32)
    lastp = np.zeros(n_total, dtype=np.int32)
    lastq = np.zeros(n_total, dtype=np.int32)
    touched = np.zeros(n_total, dtype=np.int64)
    loc = np.full(vocab_size, -1, dtype=np.int64)
    max_len = 1
    for j in range(b):
        max_len = max(max_len, lengths[n_pool + j])
    w_max = (max_len + 63) // 64
    pm = np.zeros(max_len * w_max, dtype=np.uint64)
    uniq_tok = np.zeros(max_len, dtype=np.int64)
    v = np.empty(w_max, dtype=np.uint64)

    for j in range(b):
        gj = n_pool + j
        m = lengths[gj]
        nt = 0
        for e in range(p_ptr[j], p_ptr[j + 1]):
            r = p_rank[e]
            p = p_pos[e]
            nt = _probe(m_uniq, m_starts, m_rec, m_pos, r, p, gj, n_pool, kept, False, cnt, lastp, lastq, touched, nt)
            nt = _probe(t_uniq, t_starts, t_rec, t_pos, r, p, gj, n_pool, kept, True, cnt, lastp, lastq, touched, nt)
        counters[0] += nt
        rejected = False
        nu = -1  # match masks of j not built yet
        bj = 0.0
        nj = np.int64(-1)
        for x in range(nt):
            i = touched[x]
            c = np.int64(cnt[i])
            pj = np.int64(lastp[i])
            qi = np.int64(lastq[i])
            cnt[i] = 0
            n = lengths[i]
            if m < tab and n < tab:
                need = need_tab[m, n]
            else:
                need = need_scalar(m, n, threshold)
            if need > min(m, n):
                continue
            if c + min(m - 1 - pj, n - 1 - qi) < need:
                continue
            counters[1] += 1
            # Exact multiset overlap: every common element ranked up to the last prefix match
            # was counted (it lies in both prefixes); merge the rest.
            ov = c
            a0 = ptr[gj] + pj + 1
            a1 = ptr[gj + 1]
            b0 = ptr[i] + qi + 1
            b1 = ptr[i + 1]
            while a0 < a1 and b0 < b1:
                if ov + min(a1 - a0, b1 - b0) < need:
                    break
                ra = sranks[a0]
                rb = sranks[b0]
                if ra == rb:
                    ov += 1
                    a0 += 1
                    b0 += 1
                elif ra < rb:
                    a0 += 1
                else:
                    b0 += 1
            if ov < need:
                continue
            counters[2] += 1
            if nu < 0:
                nu = _build_pm(toks, ptr[gj], ptr[gj + 1], loc, pm, uniq_tok)
            lcs = _lcs_with_pm(toks, ptr[i], ptr[i + 1], m, loc, pm, v)
            s = _f(lcs, m, n)
            if s > threshold:
                rejected = True
            if s > bj or (s == bj and nj >= 0 and i < nj):
                bj = s
                nj = i
        if nu > 0:
            for u in range(nu):
                loc[uniq_tok[u]] = -1
        kept[j] = not rejected
        best[j] = bj
        nearest[j] = nj
    return kept, best, nearest, counters
