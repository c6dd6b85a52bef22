"""The demo's closing sections from canned stage outputs: the judge's verdict precedes the win rates,
and /v1/medqa's two replies (with context, SLM only) are both printed."""

from __future__ import annotations

from medforge.demo import print_evaluation, print_medqa
from medforge.pipeline.runner import stage_clock


def _rel(usable):
    return {"usable": usable, "reasons": [] if usable else ["order consistency 0.00 < 0.60", "position bias 1.00 > 0.50"],
            "consistency": 0.0, "position_bias": 1.0, "unparsed_share": 0.0, "n_pairs": 4, "n_calls": 8}


def test_evaluation_section_puts_the_verdict_above_the_win_rate(capsys):
    m = {"n_items": 4, "judge": "served smollm2-135m", "report": "/r/tuned/report.json", "report_html": "/r/tuned/report.html",
         "judge_reliability": {"gpt-4-answer": _rel(False)},
         "win_rates": {"gpt-4-answer": {"win_rate": 0.5, "ci95": [0.5, 0.5], "n_scored": 4}},
         "reference_scores": {"gpt-4-answer": {"rouge_l": {"n": 4, "mean": 0.12, "ci95": [0.1, 0.14]},
                                               "embedding_cosine": {"n": 4, "mean": 0.6, "ci95": [0.5, 0.7]}}}}
    print_evaluation({"models": {"tuned": m, "base": m}, "judge_usable": {"gpt-4-answer": False},
                      "comparison": "/r/comparison.md"}, "small")
    out = capsys.readouterr().out
    assert out.index("judge NOT usable here") < out.index("no winner is called") < out.index("win rate vs gpt-4-answer")
    assert "ROUGE-L F1 vs gpt-4-answer: tuned 0.120 [0.100, 0.140]" in out and "embedding cosine" in out


def test_medqa_section_prints_both_rows_the_keywords_and_the_preliminary_answer(capsys):
    opts = {"A": "Electrocardiogram", "B": "Colonoscopy", "C": "Skin biopsy", "D": "Spirometry"}
    mq = {"url": "http://x/v1/medqa", "question": {"question": "chest pain?", "options": opts}, "status": 200,
          "reply": {"answer": "A", "answer_text": "Electrocardiogram", "probabilities": {"A": 0.7, "B": 0.1, "C": 0.1, "D": 0.1},
                    "sent": {"keywords": ["chest pain"], "options": opts},
                    "context": {"overall_context": "Acute coronary syndrome.", "preliminary_answer": "A"}},
          "slm_only": {"status": 200, "reply": {"answer": "C", "answer_text": "Skin biopsy",
                                                "probabilities": {"A": 0.2, "B": 0.2, "C": 0.4, "D": 0.2}}}}
    gap = {"with": 0.95, "without": 0.25, "n": 80, "example_with": {"A": 0.9, "B": 0.1}, "example_without": {"A": 0.5, "B": 0.5},
           "example": {"question": "Which?", "options": {"A": "x", "B": "y"}, "answer": "A",
                       "option_contexts": {"A": "yes yes yes", "B": "no no no"}}}
    print_medqa(mq, gap)
    out = capsys.readouterr().out
    assert 'keywords ["chest pain"]' in out and "preliminary answer: A" in out
    assert "A 0.700  B 0.100  C 0.100  D 0.100" in out and "A 0.200  B 0.200  C 0.400  D 0.200" in out
    assert "moved the probabilities by up to 0.500" in out and "95% right with context, 25% without" in out
    assert "with context A 0.900  B 0.100 | without A 0.500  B 0.500" in out


def test_stage_clock():
    assert stage_clock(12.4, None, 0) == " (elapsed 12 s)"
    assert "this stage usually ~80 s, about 220 s of stages left" in stage_clock(300, 80, 220)
