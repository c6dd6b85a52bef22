"""/v1/medqa request validation and error bodies (no Ray)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from medforge.serve.qa import QARequest, safe_validation_errors

SECRET_Q = "Mrs. Quorra Blint, MRN 55123, has fever."


def test_options_as_dict_or_list_become_lettered_dict():
    assert QARequest(question="q", options=["x", "y"]).options == {"A": "x", "B": "y"}
    assert QARequest(question="q", options={"A": "x", "C": "y"}).options == {"A": "x", "C": "y"}


@pytest.mark.parametrize("options", [["only"], [f"o{i}" for i in range(11)], {"A": "x", "AB": "y"},
                                     {"A": "x", "b": "y"}, ["x", "  "], {"A": 1, "B": 2}])
def test_bad_options_are_refused_without_echoing_the_input(options):
    with pytest.raises(ValidationError) as exc:
        QARequest(question=SECRET_Q, options=options)
    safe = safe_validation_errors(exc.value.errors())
    assert safe and all(set(e) == {"loc", "msg", "type"} for e in safe)
    assert "Quorra" not in str(safe) and "only" not in str(safe) and "o10" not in str(safe)


def test_unknown_and_missing_fields_are_refused():
    with pytest.raises(ValidationError):
        QARequest(question="q", options=["a", "b"], patient_name="x")
    with pytest.raises(ValidationError):
        QARequest.model_validate({"options": ["a", "b"]})


def test_slm_only_request_on_a_context_model_sends_nothing_and_scores_without_context(monkeypatch):
    import asyncio
    from types import SimpleNamespace

    from medforge.mc import scorer
    from medforge.serve.qa import QAService

    svc = QAService.__new__(QAService)  # no model load: the scorer is stubbed below
    svc.mc = SimpleNamespace(format=SimpleNamespace(use_context=True))
    svc.cfg = None  # never read on the SLM-only path (it would fail if keywords or the LLM were touched)
    seen = []

    async def score(row):
        seen.append(row)
        return {"prediction": "B", "probs": {"A": 0.3, "B": 0.7}}

    req = QARequest(question=SECRET_Q, options=["x", "y"], slm_only=True, return_context=True)
    status, body = asyncio.run(svc.answer(req, score))
    assert status == 200 and body["mode"] == "slm_only" and body["sent"] == {"keywords": [], "options": {}}
    assert "context" not in body and set(body["timings_ms"]) == {"slm_ms"}
    assert seen[0]["use_context"] is False and "option_contexts" not in seen[0]
    assert QARequest(question="q", options=["x", "y"]).slm_only is False

    # a batch mixing both kinds: each row is scored with its own setting, results back in order
    calls = []

    def fake_score_rows(mc, rows, batch_size, use_context=None):
        calls.append((use_context, [r["id"] for r in rows]))
        return [{"id": r["id"], "ctx": use_context} for r in rows]

    monkeypatch.setattr(scorer, "score_rows", fake_score_rows)
    rows = [{"id": "0", "use_context": True}, {"id": "1", "use_context": False}, {"id": "2", "use_context": True}]
    assert [r["id"] for r in svc.score_batch(rows)] == ["0", "1", "2"]
    assert calls == [(None, ["0", "2"]), (False, ["1"])]


@pytest.mark.parametrize("reason, status, words", [
    # a prompt longer than the LLM's window (what vLLM answers): not worth a retry, the fix named
    ("ServedLLMError: 400 This model's maximum context length is 2048 tokens. However, your prompt contains "
     "at least 2049 input tokens", 502, "engine.max_model_len"),
    ("NotFoundError: Error code: 404 - {'error': 'model x does not exist'}", 502, "context_llm.model"),
    ("BadRequestError: Error code: 400 - {'error': 'bad'}", 502, "HTTP 400"),
    # overload, an engine restarting, a timeout, a dead replica: retry later
    ("RateLimitError: Error code: 429 - slow down", 503, "retry later"),
    ("ServedLLMError: 503 engine restarting", 503, "retry later"),
    ("APITimeoutError: Request timed out.", 503, "retry later"),
    ("RayActorError: The actor died unexpectedly", 503, "retry later"),
])
def test_context_llm_failures_map_to_a_refusal_or_a_retry(reason, status, words):
    from medforge.engines.openai_client import error_status, failure_record
    from medforge.serve.qa import context_llm_failure

    record = failure_record(reason)["engine_error"]
    code, body = context_llm_failure(record)
    assert (code, body["error"]["code"]) == (status, status) and words in body["error"]["message"]
    assert ("retry_after_s" in body["error"]) is (status == 503)
    assert "2049" not in body["error"]["message"]  # the LLM's own text is not echoed to the client
    assert error_status(failure_record("ConnectError: [Errno 111] Connection refused")["engine_error"]) is None
