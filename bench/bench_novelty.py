"""Benchmark of the exact ROUGE-L novelty filter (issue 3).

    PYTHONPATH=src python bench/bench_novelty.py                     # 5k, 20k, 52k
    PYTHONPATH=src python bench/bench_novelty.py --sizes 5000 --check-overlap 5000

For every N it reports (from one run, each N in a fresh child process so that peak RSS is its
own): wall and CPU time of ``NoveltyFilter.filter`` over the whole list (as ``medforge filter``
does; this includes importing numba and loading its compiled kernels from the on-disk cache),
peak RSS, pairs past the prefix/length/positional filters, pairs verified by LCS (past the exact
overlap bound) vs the pairs a reference loop compares, and the reference time of rouge_score
measured on a sample of pairs and extrapolated. ``--cold N`` additionally runs N with an empty
numba cache (``NUMBA_CACHE_DIR`` set to a fresh temporary folder), i.e. including JIT compile.

Exactness checks, independent of the filter's pruning:

* ``--check-overlap N``: the reference greedy loop with rouge_score's own tokenizer and
  ``_score_lcs`` on every pair whose multiset token overlap (a trivially valid upper bound on the
  LCS, computed by dense matrix products, no rapidfuzz, no filter code) could exceed the
  threshold; all other pairs provably score <= threshold. Decisions, and best score / nearest id
  of every rejected candidate, must equal the filter's.
* ``--check-exhaustive N``: all N(N-1)/2 LCS values computed without any pruning (rapidfuzz
  ``cdist``), greedy reference on those; rouge_score re-scores every pair above ``--band``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import resource
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from novelty_data import generate  # noqa: E402

THRESHOLD = 0.7


def _maxrss_mb() -> float:
    # VmHWM is per address space, so a spawned child does not inherit the parent's peak (Linux
    # ru_maxrss survives fork+exec and would report the parent's high-water mark).
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_filter(n: int, conn) -> None:
    from medforge.generate.novelty import NoveltyFilter

    texts = generate(n)
    ids = [str(k) for k in range(n)]
    base = _maxrss_mb()
    f = NoveltyFilter(threshold=THRESHOLD)
    w0, c0 = time.perf_counter(), time.process_time()
    dec = f.filter(texts, ids)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    conn.send(
        {
            "n": n,
            "wall_s": wall,
            "cpu_s": cpu,
            "rss_before_mb": base,
            "peak_rss_mb": _maxrss_mb(),
            "stats": dict(f.stats),
            "decisions": [(d.keep, d.best_score, d.nearest_id) for d in dec],
        }
    )


def in_child(n: int, cold: bool = False) -> dict:
    import os
    import tempfile

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    saved = os.environ.get("NUMBA_CACHE_DIR")
    with tempfile.TemporaryDirectory() as tmp:
        if cold:  # the spawned child inherits the environment: an empty kernel cache
            os.environ["NUMBA_CACHE_DIR"] = tmp
        try:
            p = ctx.Process(target=run_filter, args=(n, child))
            p.start()
        finally:
            if cold:
                if saved is None:
                    os.environ.pop("NUMBA_CACHE_DIR")
                else:
                    os.environ["NUMBA_CACHE_DIR"] = saved
        res = parent.recv()
        p.join()
    return res


def rouge_time_per_pair(texts: list[str], pairs: int = 2000) -> tuple[float, float]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rng = random.Random(0)
    sample = [(rng.choice(texts), rng.choice(texts)) for _ in range(pairs)]
    t0, c0 = time.perf_counter(), time.process_time()
    for a, b in sample:
        scorer.score(a, b)
    return (time.perf_counter() - t0) / pairs, (time.process_time() - c0) / pairs


def greedy_reference(n: int, scored: dict[int, list[tuple[int, float]]]) -> list[tuple[bool, float, str | None]]:
    """Greedy loop over candidates; ``scored[j]`` lists (i, score) for every i < j that may be > t."""
    kept = [False] * n
    out = []
    for j in range(n):
        best, nearest = 0.0, None
        for i, s in sorted(scored.get(j, [])):
            if kept[i] and s > best:
                best, nearest = s, str(i)
        kept[j] = best <= THRESHOLD
        out.append((kept[j], best, nearest))
    return out


def check_overlap(texts: list[str]) -> tuple[list, dict]:
    """Reference decisions from rouge_score on every pair the overlap bound cannot exclude."""
    from rouge_score import rouge_scorer
    from rouge_score import tokenize as rtok

    toks = [rtok.tokenize(t, None) for t in texts]
    elems = []
    for tk in toks:
        c: Counter = Counter()
        row = []
        for w in tk:
            c[w] += 1
            row.append((w, c[w]))
        elems.append(row)
    df = Counter(e for row in elems for e in row)
    cols = {e: k for k, e in enumerate(e for e, v in df.items() if v >= 2)}  # singletons never overlap
    n = len(texts)
    x = np.zeros((n, len(cols)), dtype=np.float32)
    for r, row in enumerate(elems):
        for e in row:
            k = cols.get(e)
            if k is not None:
                x[r, k] = 1.0
    lens = np.array([len(t) for t in toks], dtype=np.float64)
    scored: dict[int, list[tuple[int, float]]] = {}
    n_scored = 0
    for a in range(0, n, 1024):
        ov = x[a : a + 1024] @ x.T  # exact small integers in float32
        for r in range(ov.shape[0]):
            j = a + r
            o = ov[r, :j].astype(np.float64)
            m = lens[j]
            nn = lens[:j]
            with np.errstate(divide="ignore", invalid="ignore"):
                p, q = o / nn, o / m
                f = np.where(p + q > 0, 2 * p * q / (p + q), 0.0)  # F is increasing in the LCS
            for i in np.flatnonzero(f > THRESHOLD).tolist():
                s = rouge_scorer._score_lcs(toks[i], toks[j]).fmeasure
                n_scored += 1
                if s > THRESHOLD:
                    scored.setdefault(j, []).append((i, s))
    return greedy_reference(n, scored), {"rouge_scored_pairs": n_scored, "total_pairs": n * (n - 1) // 2}


def check_exhaustive(texts: list[str], band: float) -> tuple[list, dict]:
    """Reference decisions from unpruned all-pairs LCS; rouge_score re-scores pairs > band."""
    from rapidfuzz import process
    from rapidfuzz.distance import LCSseq
    from rouge_score import rouge_scorer
    from rouge_score import tokenize as rtok

    toks = [rtok.tokenize(t, None) for t in texts]
    vocab: dict[str, int] = {}
    seqs = ["".join(chr(0xE000 + vocab.setdefault(w, len(vocab))) for w in tk) for tk in toks]
    lens = np.array([len(t) for t in toks], dtype=np.float64)
    n = len(texts)
    scored: dict[int, list[tuple[int, float]]] = {}
    mismatches = checked = 0
    for a in range(0, n, 2048):
        lcs = process.cdist(seqs[a : a + 2048], seqs[: a + 2048], scorer=LCSseq.similarity, workers=-1, dtype=np.int32)
        for r in range(lcs.shape[0]):
            j = a + r
            o = lcs[r, :j].astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                p, q = o / lens[:j], o / lens[j]
                f = np.where(p + q > 0, 2 * p * q / (p + q), 0.0)
            for i in np.flatnonzero(f > band).tolist():
                s = rouge_scorer._score_lcs(toks[i], toks[j]).fmeasure
                checked += 1
                mismatches += s != f[i]
                if s > THRESHOLD:
                    scored.setdefault(j, []).append((i, s))
    info = {"all_pairs_lcs": n * (n - 1) // 2, "rouge_rescored_pairs": checked, "lcs_vs_rouge_mismatches": int(mismatches)}
    return greedy_reference(n, scored), info


def compare(fast: list, ref: list) -> dict:
    dec = sum(f[0] != r[0] for f, r in zip(fast, ref, strict=True))
    rej = sum((not r[0]) and (f[1] != r[1] or f[2] != r[2]) for f, r in zip(fast, ref, strict=True))
    return {"decision_diffs": dec, "rejected_score_or_nearest_diffs": rej}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 52000])
    ap.add_argument("--check-overlap", type=int, nargs="*", default=[5000])
    ap.add_argument("--check-exhaustive", type=int, nargs="*", default=[20000])
    ap.add_argument("--band", type=float, default=0.6)
    ap.add_argument("--cold", type=int, nargs="*", default=[52000], help="also run these N with an empty numba cache")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    results = []
    per_pair, per_pair_cpu = rouge_time_per_pair(generate(2000))
    print(
        f"rouge_score RougeScorer.score: {per_pair * 1e6:.1f} us/pair wall, "
        f"{per_pair_cpu * 1e6:.1f} us/pair CPU (2000 sampled pairs)"
    )
    in_child(200)  # make sure the kernels are in the on-disk numba cache (not reported)
    for n in args.sizes:
        res = in_child(n)
        st = res["stats"]
        res["rouge_us_per_pair"] = per_pair * 1e6
        res["rouge_cpu_us_per_pair"] = per_pair_cpu * 1e6
        res["reference_s_extrapolated"] = st["reference_pairs"] * per_pair
        res["reference_cpu_s_extrapolated"] = st["reference_pairs"] * per_pair_cpu
        res["speedup"] = res["reference_s_extrapolated"] / res["wall_s"]
        res["speedup_cpu"] = res["reference_cpu_s_extrapolated"] / res["cpu_s"]
        texts = None
        if n in args.check_overlap:
            texts = generate(n)
            ref, info = check_overlap(texts)
            res["check_overlap"] = {**info, **compare(res["decisions"], ref)}
        if n in args.check_exhaustive:
            texts = texts or generate(n)
            ref, info = check_exhaustive(texts, args.band)
            res["check_exhaustive"] = {**info, **compare(res["decisions"], ref)}
        res.pop("decisions")
        results.append(res)
        print(
            f"N={n}: wall {res['wall_s']:.2f}s cpu {res['cpu_s']:.2f}s peak RSS {res['peak_rss_mb']:.0f} MB "
            f"(before filter {res['rss_before_mb']:.0f} MB); kept {st['kept']}/{n}; "
            f"pairs past prefix/positional filters {st['candidate_pairs']:,}, "
            f"verified by LCS {st['verified_pairs']:,} of {st['reference_pairs']:,} "
            f"(pruned {st['reference_pairs'] - st['verified_pairs']:,}); rouge_score reference "
            f"~{res['reference_s_extrapolated']:.0f}s wall / {res['reference_cpu_s_extrapolated']:.0f}s CPU "
            f"extrapolated, ratio {res['speedup']:.0f}x wall, {res['speedup_cpu']:.0f}x CPU"
        )
        for key in ("check_overlap", "check_exhaustive"):
            if key in res:
                print(f"  {key}: {res[key]}")
    for n in args.cold:
        res = in_child(n, cold=True)
        res.pop("decisions")
        results.append({"cold_numba_cache": True, **res})
        print(f"N={n} with an empty numba cache (JIT compile included): wall {res['wall_s']:.2f}s cpu {res['cpu_s']:.2f}s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
