"""Aggregation of pairwise verdicts: win rate, bootstrap CI, position bias, length control.

Pure functions over plain lists (numpy only), unit-tested on cases computed by hand.

Scoring (AlpaCare's protocol): each verdict gives the model win = 1, tie = 0.5, loss = 0; an
item's score is the mean over its parsed orders (both, or one when the other could not be
parsed); the win rate is the mean over items with at least one parsed verdict.

Length control (in the manner of AlpacaEval 2.0, Dubois et al. 2024): a logistic regression of
the item score (a soft label in [0, 1]) on ``tanh(delta / sd(delta))``, where ``delta`` is the
model's answer length minus the reference's; the length-controlled win rate is the fitted
preference at ``delta = 0``, i.e. ``sigmoid(intercept)``. AlpacaEval's GLM also has an
instruction-difficulty term estimated across many models; with one model and one reference per
item there is nothing to estimate it from, so it is left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from medforge.evaluate.judge import ORDERS, OUTCOME_SCORE


def item_score(outcomes: Sequence[str | None]) -> float | None:
    """Mean score over an item's parsed outcomes (``win``/``tie``/``loss``); ``None`` if none parsed."""
    vals = [OUTCOME_SCORE[o] for o in outcomes if o is not None]
    return sum(vals) / len(vals) if vals else None


def bootstrap_ci(scores: Sequence[float], n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> list[float]:
    """Percentile bootstrap CI of the mean, resampling items with replacement.

    Returns ``[low, high]``; ``[nan, nan]`` for no scores.
    """
    x = np.asarray(scores, dtype=float)
    if x.size == 0:
        return [math.nan, math.nan]
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    return [float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))]


def _sigmoid(z: np.ndarray | float) -> Any:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=float)))


def fit_length_glm(scores: Sequence[float], delta_len: Sequence[float], l2: float = 1e-3,
                   max_iter: int = 100, tol: float = 1e-10) -> tuple[float, float]:
    """``(intercept, length_coef)`` of ``logit P(win) = b0 + b1 * tanh(delta / sd(delta))``.

    Fitted by Newton's method on the (soft-label) log-likelihood, with an L2 penalty ``l2`` on
    ``b1`` only, so that data where length alone separates wins from losses stays finite. With
    no spread in ``delta`` the length term is dropped (``b1 = 0``).
    """
    y = np.asarray(scores, dtype=float)
    d = np.asarray(delta_len, dtype=float)
    if y.size == 0:
        return math.nan, math.nan
    sd = d.std()
    x = np.tanh(d / sd) if sd > 0 else np.zeros_like(d)
    X = np.column_stack([np.ones_like(x), x])
    penalty = np.diag([0.0, l2 if sd > 0 else 1.0])
    beta = np.zeros(2)
    for _ in range(max_iter):
        p = _sigmoid(X @ beta)
        grad = X.T @ (y - p) - penalty @ beta
        hess = X.T @ (X * (p * (1 - p))[:, None]) + penalty + 1e-12 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        beta = beta + step
        if np.abs(step).max() < tol:
            break
    # all wins (or all losses) with no length spread: the MLE intercept is +-inf
    b0 = float(np.clip(beta[0], -50, 50))
    return b0, float(beta[1])


def lc_win_rate(scores: Sequence[float], delta_len: Sequence[float], l2: float = 1e-3) -> tuple[float, float]:
    """``(length-controlled win rate, length coefficient)``: the GLM's preference at equal length."""
    if len(scores) == 0:
        return math.nan, math.nan
    b0, b1 = fit_length_glm(scores, delta_len, l2)
    return float(_sigmoid(b0)), b1


# Default thresholds of the judge-reliability verdict (docs/evaluation.md says why these values).
MIN_CONSISTENCY = 0.6
MAX_POSITION_BIAS = 0.5
MAX_UNPARSED = 0.2
MIN_PAIRS = 10


def judge_reliability(records: list[dict[str, Any]], min_consistency: float = MIN_CONSISTENCY,
                      max_position_bias: float = MAX_POSITION_BIAS, max_unparsed: float = MAX_UNPARSED,
                      min_pairs: int = MIN_PAIRS) -> dict[str, Any]:
    """Whether the judge's verdicts on one reference set can carry a win rate.

    Over the per-item records of :func:`summarize`. An order whose verdict is ``None`` while its
    outcome is set had no judge call (an empty answer loses without one) and is left out.

    * ``consistency``: among items whose two orders both parsed (``n_pairs``), the share whose
      two orders give the model the same outcome (win/win, tie/tie, loss/loss), as MT-Bench
      (Zheng et al. 2023) reports it;
    * ``position_bias``: among the same items, the share where the judge named the same position
      in both orders (``a``/``a`` or ``b``/``b``): it followed the slot, not the answer;
    * ``unparsed``: the share of judge calls whose verdict could not be parsed (or failed);
    * ``usable``: all three within the thresholds and at least ``min_pairs`` pairs; ``reasons``
      lists every threshold missed, with the numbers.

    A judge that always answers "Output (a)" has consistency 0 and position bias 1: not usable.
    """
    calls = unparsed = pairs = agree = same_slot = 0
    for r in records:
        called = {o: r["verdicts"].get(o) for o in ORDERS
                  if o in r["outcomes"] and not (r["verdicts"].get(o) is None and r["outcomes"][o] is not None)}
        calls += len(called)
        unparsed += sum(v is None for v in called.values())
        if len(called) == len(ORDERS) and all(v is not None for v in called.values()):
            pairs += 1
            outs = {r["outcomes"][o] for o in ORDERS}
            agree += len(outs) == 1
            verdicts = set(called.values())
            same_slot += len(verdicts) == 1 and verdicts != {"tie"}
    consistency = agree / pairs if pairs else math.nan
    bias = same_slot / pairs if pairs else math.nan
    unparsed_share = unparsed / calls if calls else math.nan
    reasons = []
    if pairs < min_pairs:
        reasons.append(f"only {pairs} item(s) judged in both orders (< {min_pairs}): too few to tell")
    if pairs and consistency < min_consistency:
        reasons.append(f"order consistency {consistency:.2f} < {min_consistency:.2f}")
    if pairs and bias > max_position_bias:
        reasons.append(f"position bias {bias:.2f} > {max_position_bias:.2f}")
    if calls and unparsed_share > max_unparsed:
        reasons.append(f"unparsed {unparsed_share:.2f} > {max_unparsed:.2f}")
    return {"n_pairs": pairs, "n_calls": calls, "consistency": consistency, "position_bias": bias,
            "unparsed_share": unparsed_share, "usable": not reasons, "reasons": reasons,
            "thresholds": {"min_consistency": min_consistency, "max_position_bias": max_position_bias,
                           "max_unparsed": max_unparsed, "min_pairs": min_pairs}}


def reliability_line(rel: dict[str, Any]) -> str:
    """One line for reports and the demo: the verdict first, then the numbers it rests on."""
    def pct(x: float) -> str:
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f}%"

    head = "judge usable" if rel["usable"] else "judge NOT usable here (" + "; ".join(rel["reasons"]) + ")"
    return (f"{head}: order consistency {pct(rel['consistency'])}, position bias {pct(rel['position_bias'])} "
            f"over {rel['n_pairs']} item(s) judged in both orders, unparsed {pct(rel['unparsed_share'])} of {rel['n_calls']} calls")


def summarize(records: list[dict[str, Any]], n_boot: int = 2000, seed: int = 0, l2: float = 1e-3,
              thresholds: dict[str, Any] | None = None) -> dict[str, Any]:
    """Statistics for one reference set from per-item records.

    Each record: ``outcomes`` ({order: "win"/"tie"/"loss"/None}), ``verdicts`` ({order:
    "a"/"b"/"tie"/None}), ``model_length``, ``reference_length`` (characters), optional
    ``difficulty``.

    Returns the report block documented in docs/evaluation.md.
    """
    per_order = {o: {"judged": 0, "wins": 0, "ties": 0, "losses": 0, "unparsed": 0} for o in ORDERS}
    scores, deltas, scored = [], [], []
    first = decided = 0
    for r in records:
        for order in ORDERS:
            if order not in r["outcomes"]:
                continue
            out = r["outcomes"][order]
            c = per_order[order]
            c["judged"] += 1
            c[{"win": "wins", "tie": "ties", "loss": "losses", None: "unparsed"}[out]] += 1
            v = r["verdicts"].get(order)
            if v in ("a", "b"):
                decided += 1
                first += v == "a"
        s = item_score([r["outcomes"][o] for o in ORDERS if o in r["outcomes"]])
        if s is not None:
            scores.append(s)
            deltas.append(r["model_length"] - r["reference_length"])
            scored.append(r)
    wr = float(np.mean(scores)) if scores else math.nan
    lc, coef = lc_win_rate(scores, deltas, l2)
    out: dict[str, Any] = {
        "n_items": len(records),
        "n_scored": len(scores),
        "win_rate": wr,
        "ci95": bootstrap_ci(scores, n_boot, seed),
        "ties": sum(c["ties"] for c in per_order.values()),
        "unparsed": sum(c["unparsed"] for c in per_order.values()),
        "first_position_rate": first / decided if decided else math.nan,
        "lc_win_rate": lc,
        "length_coef": coef,
        "mean_length": {
            "model": float(np.mean([r["model_length"] for r in records])) if records else math.nan,
            "reference": float(np.mean([r["reference_length"] for r in records])) if records else math.nan,
        },
        "per_order": per_order,
        "judge_reliability": judge_reliability(records, **(thresholds or {})),
    }
    diffs = sorted({str(r["difficulty"]) for r in scored if r.get("difficulty") not in (None, "")})
    if diffs:
        out["by_difficulty"] = {}
        for d in diffs:
            ds = [s for s, r in zip(scores, scored, strict=True) if str(r.get("difficulty")) == d]
            out["by_difficulty"][d] = {"n": len(ds), "win_rate": float(np.mean(ds)), "ci95": bootstrap_ci(ds, n_boot, seed)}
    return out
