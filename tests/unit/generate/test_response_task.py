import json

from medforge.generate import response_task as rt

MC = {"type": "Multiple-choice Q&A", "instruction": "Pick the best drug.", "input": "Options: (A) x (B) y (C) z"}
OPEN = {"type": "Open Q&A", "instruction": "Explain gout.", "input": "<noinput>"}


def test_mc_detection_and_letters():
    assert rt.is_multiple_choice(MC) and not rt.is_multiple_choice(OPEN)
    assert rt.option_letters(MC) == ["A", "B", "C"]
    assert rt.mc_json_schema(MC)["properties"]["answer"]["enum"] == ["A", "B", "C"]


def test_system_prompt_mentions_answer_line_only_for_mc():
    assert "The answer is (X)" in rt.format_input(MC)[0]["content"]
    assert "The answer is" not in rt.format_input(OPEN)[0]["content"]
    assert rt.format_input(OPEN)[1]["content"] == "Explain gout."
    assert rt.format_input(MC)[1]["content"].endswith("(C) z")


def test_structured_mc_renders_answer_line():
    out, reason = rt.format_output(MC, json.dumps({"explanation": "Because y.", "answer": "B"}), structured=True)
    assert reason == "" and out.endswith("The answer is (B).")


def test_unstructured_mc_without_answer_line_is_quarantined():
    out, reason = rt.format_output(MC, "It is probably y.", structured=False)
    assert out is None and "The answer is (X)" in reason
    out, _ = rt.format_output(MC, "Because y. The answer is (B).", structured=False)
    assert out is not None


def test_empty_and_truncated():
    assert rt.format_output(OPEN, "  ", False) == (None, "empty response")
    assert rt.format_output(MC, '{"explanation": "abc', True)[0] is None
