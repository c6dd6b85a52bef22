"""Exactness of the fast novelty filter against rouge_score 0.1.2 (the reference)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medforge.generate import novelty
from medforge.generate.novelty import NoveltyDecision, NoveltyFilter
from medforge.rouge import f_measure

rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
rouge_tokenize = pytest.importorskip("rouge_score.tokenize")

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "alpacare"
OWN = Path(__file__).resolve().parents[3] / "src" / "medforge"
_SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def ref_tokens(text: str) -> list[str]:
    return rouge_tokenize.tokenize(text, None)


def ref_score(a: list[str], b: list[str]) -> float:
    # The function RougeScorer.score calls for rougeL after tokenising (target, prediction).
    return rouge_scorer._score_lcs(a, b).fmeasure


def reference_filter(seeds, cands, threshold=0.7):
    """The slow loop the fast filter must match decision for decision."""
    pool = [ref_tokens(s) for s in seeds]
    pool_ids = [f"s{k}" for k in range(len(seeds))]
    out = []
    for k, c in enumerate(cands):
        toks = ref_tokens(c)
        best, nearest = 0.0, None
        for other, oid in zip(pool, pool_ids, strict=True):
            s = ref_score(other, toks)
            if s > best:
                best, nearest = s, oid
        keep = best <= threshold
        if keep:
            pool.append(toks)
            pool_ids.append(f"c{k}")
        out.append((keep, best, nearest))
    return out


def run_fast(seeds, cands, threshold=0.7, batch=None, **kw):
    f = NoveltyFilter(threshold=threshold, **kw)
    f.add(seeds, [f"s{k}" for k in range(len(seeds))])
    ids = [f"c{k}" for k in range(len(cands))]
    batch = batch or max(1, len(cands))
    out: list[NoveltyDecision] = []
    for a in range(0, len(cands), batch):
        out += f.filter(cands[a : a + batch], ids[a : a + batch])
    return out, f


def assert_same(fast, ref):
    assert [d.keep for d in fast] == [r[0] for r in ref]
    for d, (keep, best, nearest) in zip(fast, ref, strict=True):
        if not keep:  # exact for every rejected candidate
            assert d.best_score == best
            assert d.nearest_id == nearest
        else:
            assert d.best_score <= best  # kept: best over verified survivors, a lower bound


# ---------------------------------------------------------------- length bound
# (the tokenizer, the LCS and the F-measure: tests/unit/test_rouge.py)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.sampled_from([0.0, 0.3, 0.5, 0.7, 0.75, 0.9, 1.0]))
def test_min_rejecting_lcs_is_exact(m, n, t):
    need = int(novelty._min_rejecting_lcs(np.array([m]), np.array([n]), t)[0])
    cap = min(m, n)
    assert 1 <= need <= cap + 1
    if need <= cap:
        assert f_measure(need, m, n) > t
    if need > 1:
        assert f_measure(need - 1, m, n) <= t


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(list("abcdefgh")), max_size=12).map(" ".join), max_size=30),
    st.sampled_from([0.3, 0.5, 0.7]),
    st.integers(1, 8),
)
def test_decisions_match_reference_random_texts(texts, threshold, batch):
    seeds, cands = texts[:3], texts[3:]
    fast, _ = run_fast(seeds, cands, threshold=threshold, batch=batch, sub_batch=5)
    assert_same(fast, reference_filter(seeds, cands, threshold))


# ---------------------------------------------------------------- boundary and edge cases


def test_exactly_threshold_is_kept():
    # 10 vs 10 tokens with LCS 7 -> F = 0.7 exactly in rouge_score's float arithmetic.
    a = " ".join(f"w{k}" for k in range(10))
    b = " ".join([f"w{k}" for k in range(7)] + ["x1", "x2", "x3"])
    assert ref_score(ref_tokens(a), ref_tokens(b)) == 0.7
    (d,), _ = run_fast([a], [b])
    assert d.keep and d.best_score <= 0.7  # pruned: scores <= threshold need no verification
    c = " ".join([f"w{k}" for k in range(8)] + ["x1", "x2"])  # F = 0.8 rejects
    (d,), _ = run_fast([a], [c])
    assert not d.keep and d.best_score == pytest.approx(0.8) and d.nearest_id == "s0"


def test_empty_and_punctuation_only_strings():
    cands = ["", "   ", "!!! ???", "", "a"]
    fast, f = run_fast([""], cands)
    assert all(d.keep and d.best_score == 0.0 and d.nearest_id is None for d in fast)
    assert len(f) == 1 + len(cands)
    assert NoveltyFilter().filter([], []) == []


def test_unicode_texts_match_reference():
    cands = ["İstanbul café naïve", "istanbul cafe naive", "ISTANBUL CAFÉ NAÏVE", "straße Straße", "strasse", "😀 😀", "Ｆｕｌｌｗｉｄｔｈ", "kelvin K", "kelvin k"]
    fast, _ = run_fast([], cands, threshold=0.5)
    assert_same(fast, reference_filter([], cands, 0.5))


def test_very_long_strings():
    rng = random.Random(1)
    words = [f"t{k}" for k in range(400)]
    a = " ".join(rng.choice(words) for _ in range(3000))
    b_tokens = a.split()
    for _ in range(600):
        b_tokens[rng.randrange(len(b_tokens))] = rng.choice(words)
    b = " ".join(b_tokens)
    c = " ".join(rng.choice(words) for _ in range(2500))
    fast, _ = run_fast([a], [b, c, a])
    ta, tb = ref_tokens(a), ref_tokens(b)
    assert fast[0].best_score == ref_score(ta, tb)  # > 0.7, so exact
    assert not fast[0].keep and not fast[2].keep and fast[2].best_score == 1.0


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(0, 6), max_size=200),
    st.lists(st.integers(0, 6), max_size=200),
    st.integers(0, 3),
)
def test_kernel_lcs_matches_rouge_score(a, b, vocab_shift):
    # Bit-parallel LCS of the numba kernel, single- and multi-word (>64, >128 tokens) records.
    from medforge.generate import _novelty_kernels as nk

    a = [x + vocab_shift for x in a]
    toks = np.array(a + b, dtype=np.int64)
    ptr = np.array([0, len(a), len(a) + len(b)], dtype=np.int64)
    got = nk.lcs_pairs(toks, ptr, np.array([0, 1]), np.array([1, 0]), 16)
    expect = rouge_scorer._lcs_table(a, b)[-1][-1] if a and b else 0
    assert got.tolist() == [expect, expect]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 700), st.integers(0, 700), st.sampled_from([0.0, 0.3, 0.5, 0.7, 0.75, 0.9, 1.0]))
def test_kernel_need_matches_numpy(m, n, t):
    from medforge.generate import _novelty_kernels as nk

    assert nk.need_scalar(m, n, t) == int(novelty._min_rejecting_lcs(np.array([m]), np.array([n]), t)[0])


def test_threshold_validation_and_lengths():
    with pytest.raises(ValueError):
        NoveltyFilter(threshold=1.5)
    f = NoveltyFilter()
    with pytest.raises(ValueError):
        f.filter(["a"], ["1", "2"])
    with pytest.raises(TypeError):
        f.filter([None], ["1"])  # type: ignore[list-item]
    f.add(["a b c"], ["x"])
    assert len(f) == 1 and f.ids == ["x"]


def test_threshold_one_keeps_everything_and_zero_rejects_any_overlap():
    cands = ["a b", "a b", "b c", "d"]
    fast, _ = run_fast([], cands, threshold=1.0)
    assert all(d.keep for d in fast)
    fast, _ = run_fast([], cands, threshold=0.0)
    assert [d.keep for d in fast] == [True, False, False, True]


# ---------------------------------------------------------------- real AlpaCare texts


def _perturb(text: str, rng: random.Random) -> str:
    w = text.split()
    op = rng.randrange(4)
    if op == 0 and len(w) > 3:
        del w[rng.randrange(len(w))]
    elif op == 1 and len(w) > 2:
        k = rng.randrange(len(w) - 1)
        w[k], w[k + 1] = w[k + 1], w[k]
    elif op == 2:
        w.insert(rng.randrange(len(w) + 1), rng.choice(["please", "briefly", "also"]))
    else:
        w = [x.upper() if rng.random() < 0.3 else x for x in w]
    return " ".join(w)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def own_texts() -> tuple[list[str], list[str]]:
    """The project's own medical texts, for a clone without AlpaCare's: the built-in seed instructions as
    the pool, and as candidates the demo's questions and the sentences of its reference answers and of
    the seeds' case vignettes (about 110 candidates after the perturbations, a third of them rejected)."""
    seed_rows = _jsonl(OWN / "generate" / "data" / "default_seeds.jsonl")
    demo = _jsonl(OWN / "pipeline" / "data" / "demo_questions.jsonl")

    def sentences(text: str) -> list[str]:
        return [s.strip() for s in re.split(r"(?<=[.?!])\s+", text) if len(s.split()) >= 4]

    tests = [r["instruction"] for r in demo] + [s for r in demo for s in sentences(r["reference"])]
    tests += [s for r in seed_rows if r["input"] != "<noinput>" for s in sentences(r["input"])]
    return [r["instruction"] for r in seed_rows], tests


@pytest.fixture(scope="module")
def alpacare():
    """Seeds, candidates and the reference decisions: AlpaCare's seed tasks and MedInstruct-test when
    ../shared holds them (167 seeds, 216 questions), else the project's own texts."""
    seed_path, test_path = DATA / "med_seed.json", DATA / "MedInstruct-test.jsonl"
    if seed_path.exists() and test_path.exists():
        seeds = [d["instruction"] for d in json.loads(seed_path.read_text(encoding="utf-8"))]
        tests = [r["instruction"] for r in _jsonl(test_path)]
    else:
        seeds, tests = own_texts()
    rng = random.Random(3)
    cands: list[str] = []
    for text in tests + seeds[::3]:
        cands.append(text)
        if rng.random() < 0.4:  # near-duplicates of earlier texts and of seeds
            src = rng.choice(cands + seeds)
            cands.insert(rng.randrange(len(cands) + 1), _perturb(src, rng))
        if rng.random() < 0.1:  # recombined halves
            a, b = rng.choice(cands).split(), rng.choice(seeds).split()
            cands.append(" ".join(a[: len(a) // 2] + b[len(b) // 2 :]))
    return seeds, cands, reference_filter(seeds, cands)


@pytest.mark.parametrize("batch,sub_batch", [(None, 2048), (16, 2048), (None, 37), (1, 1)])
def test_decisions_identical_on_alpacare(alpacare, batch, sub_batch):
    seeds, cands, ref = alpacare
    assert 0 < sum(r[0] for r in ref) < len(ref)  # the data exercises both outcomes
    fast, f = run_fast(seeds, cands, batch=batch, sub_batch=sub_batch)
    assert_same(fast, ref)
    assert f.stats["verified_pairs"] < f.stats["reference_pairs"] / 10  # pruning works


def test_rouge_scorer_public_api_agrees(alpacare):
    # The reference uses rouge_score's internal _score_lcs on pre-tokenised text for speed;
    # check it equals the public RougeScorer.score on a sample of real pairs.
    seeds, cands, _ = alpacare
    rng = random.Random(0)
    for _ in range(200):
        a, b = rng.choice(seeds + cands), rng.choice(cands)
        assert _SCORER.score(a, b)["rougeL"].fmeasure == ref_score(ref_tokens(a), ref_tokens(b))
