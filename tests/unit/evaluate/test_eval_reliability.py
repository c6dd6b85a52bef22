"""Judge reliability (order consistency, position bias, unparsed share, verdict) and the
reference-based scores beside the judge, on scripted judges and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medforge.evaluate import judge as J
from medforge.evaluate.refscores import cosine_pairs, mean_pool, reference_scores, rouge_l
from medforge.evaluate.stats import judge_reliability, reliability_line, summarize


def _records(script, n=12, empty=()):
    """Per-item records as freeform.item_records builds them, from a scripted judge: order -> reply text."""
    recs = []
    for i in range(n):
        rec = {"id": str(i), "outcomes": {}, "verdicts": {}, "model_length": 10, "reference_length": 10, "difficulty": None}
        for order in J.ORDERS:
            if i in empty:  # an empty answer: a loss without a judge call
                rec["verdicts"][order], rec["outcomes"][order] = None, "loss"
                continue
            verdict, _ = J.parse_verdict(script(i, order))
            rec["verdicts"][order] = verdict
            rec["outcomes"][order] = J.model_outcome(order, verdict)
        recs.append(rec)
    return recs


def test_a_judge_that_always_answers_output_a_is_not_usable():
    recs = _records(lambda i, order: "Output (a)")
    rel = judge_reliability(recs)
    assert rel["n_pairs"] == 12 and rel["consistency"] == 0.0 and rel["position_bias"] == 1.0
    assert rel["unparsed_share"] == 0.0 and not rel["usable"]
    assert any("consistency 0.00 < 0.60" in r for r in rel["reasons"])
    assert any("position bias 1.00 > 0.50" in r for r in rel["reasons"])
    # its win rate is exactly the coin's 50%, whatever the answers: that is why the verdict goes above it
    s = summarize(recs, n_boot=200)
    assert s["win_rate"] == 0.5 and s["judge_reliability"] == rel
    assert reliability_line(rel).startswith("judge NOT usable here (")


def test_a_consistent_judge_is_usable():
    # prefers the model's answer on even items, the reference on odd ones, whatever the slot
    def script(i, order):
        model_slot = "a" if order == "model_first" else "b"
        ref_slot = "b" if model_slot == "a" else "a"
        return f'{{"verdict": "Output ({model_slot if i % 2 == 0 else ref_slot})"}}'

    rel = judge_reliability(_records(script))
    assert rel["consistency"] == 1.0 and rel["position_bias"] == 0.0 and rel["usable"] and rel["reasons"] == []
    assert reliability_line(rel).startswith("judge usable: order consistency 100%")


def test_ties_unparsed_and_empty_answers_by_hand():
    replies = {  # item -> (model_first reply, reference_first reply)
        0: ("tie", "tie"),                      # consistent, no position bias
        1: ("Output (a)", "Output (b)"),        # model wins both: consistent
        2: ("Output (b)", "Output (b)"),        # same slot: loss then win, inconsistent, position bias
        3: ("tie", "Output (a)"),               # tie vs loss: inconsistent, no position bias
        4: ("", "Output (b)"),                  # unparsed first order: not a pair
    }
    recs = _records(lambda i, order: replies[i][0 if order == "model_first" else 1], n=5, empty=())
    recs += _records(lambda i, order: "never asked", n=1, empty=(0,))  # empty answer: no judge call at all
    rel = judge_reliability(recs, min_pairs=4)
    assert rel["n_pairs"] == 4 and rel["n_calls"] == 10
    assert rel["consistency"] == pytest.approx(2 / 4) and rel["position_bias"] == pytest.approx(1 / 4)
    assert rel["unparsed_share"] == pytest.approx(1 / 10)
    assert not rel["usable"] and rel["reasons"] == ["order consistency 0.50 < 0.60"]
    loose = judge_reliability(recs, min_consistency=0.5, min_pairs=4)
    assert loose["usable"]
    assert "too few" in judge_reliability(recs)["reasons"][0]  # default min_pairs = 10


def test_no_judged_items_is_not_usable_and_nan():
    rel = judge_reliability(_records(lambda i, o: "x", n=2, empty=(0, 1)))
    assert rel["n_calls"] == 0 and math.isnan(rel["consistency"]) and not rel["usable"]


def test_rouge_l_is_the_novelty_kernel():
    assert rouge_l("Take aspirin now.", "take ASPIRIN now") == 1.0
    assert rouge_l("", "anything") == 0.0
    # LCS "a c" of "a b c" vs "a c d": p = r = 2/3
    assert rouge_l("a b c", "a c d") == pytest.approx(2 / 3)


def test_reference_scores_with_cis_containing_the_mean():
    pairs = [("chest pain needs an ECG", "an ECG first for chest pain"), ("rest and fluids", "rest, fluids and paracetamol"),
             ("", "see a doctor"), ("same text here", "same text here")]
    vecs = {t: np.eye(8)[k % 8] for k, t in enumerate(sorted({t for p in pairs for t in p}))}
    vecs["same text here"] = np.eye(8)[0]
    block = reference_scores(pairs, n_boot=500, seed=0, embed=lambda texts: np.stack([vecs[t] for t in texts]))
    r, e = block["rouge_l"], block["embedding_cosine"]
    assert r["per_item"][2] == 0.0 and r["per_item"][3] == 1.0 and e["per_item"][3] == pytest.approx(1.0)
    assert e["per_item"][2] == 0.0  # the empty answer scores 0, whatever its embedding
    for b in (r, e):
        assert b["n"] == 4 and b["ci95"][0] <= b["mean"] <= b["ci95"][1]
        assert b["mean"] == pytest.approx(np.mean(b["per_item"]))
    assert "not AlpaCare's protocol" in block["note"]
    assert "embedding_cosine" not in reference_scores(pairs, n_boot=100)


def test_mean_pool_ignores_padding_and_normalises():
    hidden = np.array([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]])
    pooled = mean_pool(hidden, np.array([[1, 1, 0]]))
    assert pooled.tolist() == [[1.0, 0.0]]
    assert cosine_pairs(np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[2.0, 0.0], [-1.0, -1.0]])) == pytest.approx([1.0, -1.0])
