"""comparison.md: the judge's verdict comes first, and no winner is called on an unusable judge."""

from __future__ import annotations

from medforge.pipeline.stages import comparison_markdown, judge_usable


def _rel(usable: bool, consistency: float) -> dict:
    return {"usable": usable, "reasons": [] if usable else [f"order consistency {consistency:.2f} < 0.60"],
            "consistency": consistency, "position_bias": 1 - consistency, "unparsed_share": 0.0, "n_pairs": 20, "n_calls": 40}


def _model(wr, ci, rel, rouge=None):
    m = {"win_rates": {"gpt-4": {"win_rate": wr, "ci95": ci, "n_scored": 20}}, "judge_reliability": {"gpt-4": rel}}
    if rouge is not None:
        m["reference_scores"] = {"gpt-4": {"note": "x", "rouge_l": {"n": 20, "mean": rouge, "ci95": [rouge - 0.05, rouge + 0.05]}}}
    return m


def test_an_unusable_judge_calls_no_winner_and_says_so_above_the_win_rate():
    models = {"tuned": _model(0.5, [0.5, 0.5], _rel(False, 0.0), 0.21), "base": _model(0.5, [0.5, 0.5], _rel(False, 0.0), 0.18)}
    md = comparison_markdown(models)
    assert judge_usable(models) == {"gpt-4": False}
    assert "No winner is called: the judge is not usable here" in md
    assert md.index("judge NOT usable here") < md.index("No winner") < md.index("| win rate %")
    assert "ahead" not in md and "No clear winner" not in md
    assert "| ROUGE-L F1 [95% CI] (reference-based) | 0.210 [0.160, 0.260] | 0.180 [0.130, 0.230] |" in md
    assert "not AlpaCare's protocol" in md


def test_a_usable_judge_names_a_winner_only_when_the_cis_are_apart():
    apart = {"tuned": _model(0.8, [0.7, 0.9], _rel(True, 0.9)), "base": _model(0.4, [0.3, 0.5], _rel(True, 0.8))}
    assert "**tuned is ahead**" in comparison_markdown(apart)
    overlap = {"tuned": _model(0.6, [0.4, 0.8], _rel(True, 0.9)), "base": _model(0.5, [0.3, 0.7], _rel(True, 0.8))}
    md = comparison_markdown(overlap)
    assert "No clear winner" in md and "ahead" not in md
    # usable on one model's run only: still no winner
    mixed = {"tuned": _model(0.8, [0.7, 0.9], _rel(True, 0.9)), "base": _model(0.4, [0.3, 0.5], _rel(False, 0.3))}
    assert "No winner is called" in comparison_markdown(mixed)


def test_identical_answers_are_counted_and_reported(tmp_path):
    from medforge.io import atomic_write_jsonl
    from medforge.pipeline.stages import identical_answers

    atomic_write_jsonl(tmp_path / "t.jsonl", [{"id": "1", "answer": "x"}, {"id": "2", "answer": "y"}, {"id": "3", "answer": "z"}])
    atomic_write_jsonl(tmp_path / "b.jsonl", [{"id": "1", "answer": "x"}, {"id": "2", "answer": "other"}])
    same = identical_answers(tmp_path / "t.jsonl", tmp_path / "b.jsonl")
    assert same == {"identical": 1, "items": 2}
    models = {"tuned": _model(0.5, [0.5, 0.5], _rel(False, 0.0)), "base": _model(0.5, [0.5, 0.5], _rel(False, 0.0))}
    assert "the very same answer on 1 of 2 items" in comparison_markdown(models, same)
