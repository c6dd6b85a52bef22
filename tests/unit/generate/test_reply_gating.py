"""How the generation job applies the reply gates to one reply (pure: no engine, no Ray)."""

from __future__ import annotations

from types import SimpleNamespace

from medforge.generate.pipeline import judge_reply, response_retry_ids
from medforge.generate.response_checks import ResponseCheckConfig
from medforge.progress import eta, progress_line

TASK = {"id": "t1", "instruction": "Explain the first-line treatment of hypertension.", "input": "<noinput>",
        "type": "Open Q&A"}
GOOD = "Start with an ACE inhibitor or a calcium channel blocker, chosen by age, ethnicity and comorbidity."


def _run(**checks):
    return SimpleNamespace(cfg=SimpleNamespace(responses=SimpleNamespace(checks=ResponseCheckConfig(**checks))),
                           accepted=[TASK, {**TASK, "id": "t2"}, {**TASK, "id": "t3"}])


def _rep(text, finish="stop", error="", attempt=0):
    return {"generated_text": text, "finish_reason": finish, "engine_error": error, "num_generated_tokens": 9,
            "request_seed": 5, "attempt": attempt}


def test_good_reply_is_kept_with_its_finish_reason():
    row = judge_reply(_run(), TASK, _rep(GOOD), structured=False)
    assert row["output"] == GOOD and row["gate"] == "" and row["finish_reason"] == "stop" and not row["truncated"]


def test_a_failed_gate_is_quarantined_with_the_reply():
    row = judge_reply(_run(), TASK, _rep("As an AI language model, I cannot help."), structured=False)
    assert row["output"] is None and row["gate"] == "refusal" and row["error"].startswith("refusal:")
    assert row["raw_text"].startswith("As an AI")


def test_truncated_dropped_by_default_kept_and_marked_when_configured():
    assert judge_reply(_run(), TASK, _rep(GOOD, "length"), False)["gate"] == "truncated"
    kept = judge_reply(_run(keep_truncated=True), TASK, _rep(GOOD, "length"), False)
    assert kept["output"] == GOOD and kept["truncated"] is True


def test_empty_reply_counts_as_the_empty_gate_and_gates_off_keep_everything():
    assert judge_reply(_run(), TASK, _rep("   "), False)["gate"] == "empty"
    assert judge_reply(_run(enabled=False), TASK, _rep("   "), False)["gate"] == "parse_error"
    loop = "This is a medical advice. " * 6
    assert judge_reply(_run(enabled=False), TASK, _rep(loop), False)["output"] == loop.strip()


def test_engine_errors_are_not_gated():
    row = judge_reply(_run(), TASK, _rep("", error="prompt too long for max_model_len"), False)
    assert row["gate"] == "engine_error" and row["output"] is None


def test_retry_once_only_for_gate_and_parse_failures():
    done = {"t1": {"output": None, "gate": "repetition", "attempt": 0},
            "t2": {"output": None, "gate": "engine_error", "attempt": 0},
            "t3": {"output": None, "gate": "refusal", "attempt": 1}}
    assert response_retry_ids(_run(), done) == ["t1"]
    assert response_retry_ids(_run(retry=False), done) == []
    assert response_retry_ids(_run(enabled=False), done) == []


def test_progress_line_and_eta():
    assert eta(120, 2.0) == "0:01:00" and eta(0, 0) == "0:00:00" and eta(5, 0) == "?"
    line = progress_line("accepted", 30, 120, 0.5, unit="tasks", extra="x")
    assert line == "accepted: 30/120 (25%) | 30.0 tasks/min | ETA 0:03:00 | x"
