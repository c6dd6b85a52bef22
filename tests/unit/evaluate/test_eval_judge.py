"""Verdict parsing and the judge prompt (no engine)."""

from __future__ import annotations

import pytest

from medforge.evaluate.judge import VERDICT_SCHEMA, judge_messages, model_outcome, outputs_for_order, parse_verdict, prompt_hash


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ('{"verdict": "Output (a)"}', "a"),
        ('```json\n{"verdict": "Output (b)"}\n```', "b"),
        ('{"verdict": "tie"}', "tie"),
        ("Output (b)", "b"),
        ("output a", "a"),
        ("(a)", "a"),
        ("B", "b"),
        ("**Output (a)**.", "a"),
        ("Tie", "tie"),
        ("Both outputs are equally good.", "tie"),
        ("It is a tie between Output (a) and Output (b).", "tie"),
        ("Output (a) mentions malaria but Output (b) is better because it also covers dengue.", "b"),
        ("Comparing Output (a) and Output (b), I prefer Output (a).", "a"),
        ("Output (a) and Output (b) are close. Verdict: b", "b"),
        ('{"verdict": "Output (a)"', "a"),  # structured reply cut off at max_tokens, still one output named
    ],
)
def test_parse_accepts(reply, verdict):
    assert parse_verdict(reply)[0] == verdict


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("I'm sorry, but I cannot provide medical advice.", "refused"),
        ("As an AI language model, I cannot compare these.", "refused"),
        ("Output (a) is good. Output (b) is also good.", "ambiguous"),  # names both, no preference
        ("Output (a), or maybe it's a tie.", "ambiguous"),  # hedged
        ("Output (a) is better. No wait, Output (b) is better.", "ambiguous"),  # contradicts itself
        ("banana banana banana", "unrecognised"),
        ('{"verdict": "Output (c)"}', "json verdict"),
    ],
)
def test_parse_rejects_with_reason(reply, reason):
    v, why = parse_verdict(reply)
    assert v is None and reason in why, (v, why)


def test_orders_and_outcomes():
    assert outputs_for_order("model_first", "M", "R") == ("M", "R")
    assert outputs_for_order("reference_first", "M", "R") == ("R", "M")
    assert model_outcome("model_first", "a") == "win" and model_outcome("reference_first", "a") == "loss"
    assert model_outcome("reference_first", "b") == "win" and model_outcome("model_first", "b") == "loss"
    assert model_outcome("model_first", "tie") == "tie" and model_outcome("model_first", None) is None
    with pytest.raises(ValueError):
        outputs_for_order("sideways", "M", "R")


def test_prompt_renders_both_outputs_and_input_only_when_given():
    msgs = judge_messages("Explain fever.", "", "ANSWER-A", "ANSWER-B", structured=True)
    user = msgs[1]["content"]
    assert msgs[0]["role"] == "system" and user.index("ANSWER-A") < user.index("ANSWER-B")
    assert "## Input" not in user and '{"verdict": "tie"}' in user
    assert "## Input\nA 40-year-old" in judge_messages("Q", "A 40-year-old", "a", "b", structured=False)[1]["content"]
    assert "Do not explain" in judge_messages("Q", "", "a", "b", structured=False)[1]["content"]
    assert len(prompt_hash()) == 12 and VERDICT_SCHEMA["properties"]["verdict"]["enum"] == ["Output (a)", "Output (b)", "tie"]


def test_a_verdict_cut_at_the_token_limit_is_unparsed_not_a_tie():
    from medforge.evaluate.judge import parse_verdict

    assert parse_verdict("It is a tie", "stop") == ("tie", "tie")
    verdict, reason = parse_verdict("It is a tie", "length")  # "... tie between nothing: Output (b) wins" cut off
    assert verdict is None and reason.startswith("truncated")
    assert parse_verdict('{"verdict": "Output (a)"}', "length")[0] is None
    assert parse_verdict('{"verdict": "Output (a)"}')[0] == "a"  # no finish reason known: parsed as before


def test_judge_all_passes_the_finish_reason_through_the_cache(tmp_path):
    from medforge.evaluate.freeform import _apply

    rec = {"order": "model_first"}
    _apply(rec, "It is a tie", "", cached=True, finish_reason="length")
    assert rec["verdict"] is None and rec["outcome"] is None and rec["reason"].startswith("truncated")
    _apply(rec, "It is a tie", "", cached=True)
    assert rec["outcome"] == "tie"
