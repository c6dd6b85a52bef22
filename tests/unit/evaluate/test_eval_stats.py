"""Aggregation, bootstrap and length control on cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medforge.evaluate.stats import bootstrap_ci, fit_length_glm, item_score, lc_win_rate, summarize


def _rec(i, mf, rf, vmf, vrf, ml=10, rl=10, diff=None):
    return {"id": str(i), "outcomes": {"model_first": mf, "reference_first": rf},
            "verdicts": {"model_first": vmf, "reference_first": vrf}, "model_length": ml, "reference_length": rl, "difficulty": diff}


def test_item_score_averages_parsed_orders():
    assert item_score(["win", "loss"]) == 0.5
    assert item_score(["win", "tie"]) == 0.75
    assert item_score(["win", None]) == 1.0  # the unparsed order is left out, not scored
    assert item_score([None, None]) is None


def test_summary_under_order_swapping():
    # item 0: the judge always picks (a) -> model wins first, loses swapped -> 0.5
    # item 1: model wins in both orders -> 1.0
    # item 2: tie, then model loses -> 0.25
    # item 3: unparsed both -> not scored
    # item 4: model loses first (judge picks b), unparsed swapped -> 0.0
    recs = [
        _rec(0, "win", "loss", "a", "a", diff="1"),
        _rec(1, "win", "win", "a", "b", diff="1"),
        _rec(2, "tie", "loss", "tie", "a", diff="2"),
        _rec(3, None, None, None, None, diff="2"),
        _rec(4, "loss", None, "b", None, diff="2"),
    ]
    s = summarize(recs, n_boot=500)
    assert s["n_items"] == 5 and s["n_scored"] == 4
    assert s["win_rate"] == pytest.approx((0.5 + 1.0 + 0.25 + 0.0) / 4)
    assert s["ties"] == 1 and s["unparsed"] == 3
    # decided verdicts: a, a, a, b, a, b -> 4 of 6 picked the first output
    assert s["first_position_rate"] == pytest.approx(4 / 6)
    mf, rf = s["per_order"]["model_first"], s["per_order"]["reference_first"]
    assert (mf["wins"], mf["ties"], mf["losses"], mf["unparsed"]) == (2, 1, 1, 1)
    assert (rf["wins"], rf["ties"], rf["losses"], rf["unparsed"]) == (1, 0, 2, 2)
    assert all(c["judged"] == c["wins"] + c["ties"] + c["losses"] + c["unparsed"] == 5 for c in (mf, rf))
    assert s["by_difficulty"]["1"]["win_rate"] == pytest.approx(0.75) and s["by_difficulty"]["1"]["n"] == 2
    assert s["by_difficulty"]["2"]["win_rate"] == pytest.approx(0.125) and s["by_difficulty"]["2"]["n"] == 2
    # equal lengths: the length term has no spread, so LC = the raw win rate
    assert s["lc_win_rate"] == pytest.approx(s["win_rate"], abs=1e-6)
    assert s["mean_length"] == {"model": 10.0, "reference": 10.0}


def test_bootstrap_ci():
    assert bootstrap_ci([0.7] * 20) == pytest.approx([0.7, 0.7])
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    lo, hi = bootstrap_ci([0.0] * 50 + [1.0] * 50, n_boot=4000, seed=1)
    # normal approximation: 0.5 +- 1.96 * sqrt(0.25 / 100) = 0.5 +- 0.098
    assert lo == pytest.approx(0.402, abs=0.02) and hi == pytest.approx(0.598, abs=0.02)
    assert bootstrap_ci([0, 1, 1, 0.5], seed=3) == bootstrap_ci([0, 1, 1, 0.5], seed=3)


def test_length_control_two_groups_by_hand():
    # Two length groups, +d and -d: an unpenalised logistic fit reproduces each group's mean:
    # sigmoid(b0 + b1) = 4/5 and sigmoid(b0 - b1) = 1/2, so b0 = (logit 0.8 + logit 0.5) / 2 = ln 2,
    # and the win rate at equal length is sigmoid(ln 2) = 2/3 -- the raw rate is 5/7.
    scores = [1, 1, 1, 1, 0, 1, 0]
    delta = [100, 100, 100, 100, 100, -100, -100]
    lc, coef = lc_win_rate(scores, delta, l2=0.0)
    assert np.mean(scores) == pytest.approx(5 / 7)
    assert lc == pytest.approx(2 / 3, abs=1e-6)
    # tanh(d / sd(d)) with d = +-100 in a 5:2 split; b1 = (logit .8 - logit .5) / 2 / tanh(100/sd)
    sd = np.std(delta)
    assert coef == pytest.approx(math.log(4) / 2 / math.tanh(100 / sd), rel=1e-6)


def test_length_control_soft_labels_and_separable_data_stay_finite():
    # length alone separates wins from losses: the penalty keeps b1 finite and b0 ~ 0 by symmetry
    lc, coef = lc_win_rate([1, 1, 0, 0], [50, 50, -50, -50], l2=1e-3)
    assert lc == pytest.approx(0.5, abs=1e-6) and 5 < coef < 1e4
    # all wins, no length spread: win rate 1, no overflow
    assert lc_win_rate([1.0, 1.0], [0, 0])[0] == pytest.approx(1.0)
    b0, b1 = fit_length_glm([0.5, 0.75, 0.25], [0, 0, 0])
    assert b1 == 0.0 and b0 == pytest.approx(0.0, abs=1e-9)
