"""Parsing an OpenAI-compatible chat-completions body into the engine's output columns."""

from __future__ import annotations

import json

import pytest

from medforge.engines.openai_client import parse_chat_reply


def test_parse_chat_reply_reads_text_and_usage():
    body = {"choices": [{"message": {"role": "assistant", "content": "hello"}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 2}}
    assert parse_chat_reply(body) == {"generated_text": "hello", "num_input_tokens": 7,
                                       "num_generated_tokens": 2, "finish_reason": "", "engine_error": ""}


def test_parse_chat_reply_carries_the_endpoints_finish_reason():
    body = {"choices": [{"message": {"content": "cut"}, "finish_reason": "length"}], "usage": {}}
    assert parse_chat_reply(body)["finish_reason"] == "length"
    body["choices"][0]["finish_reason"] = 3  # not text: unknown, not a crash
    assert parse_chat_reply(body)["finish_reason"] == ""


def test_eos_ids_from_a_model_folder(tmp_path):
    from medforge.engines.chat import eos_token_ids

    (tmp_path / "config.json").write_text('{"eos_token_id": [2, 7]}')
    (tmp_path / "generation_config.json").write_text('{"eos_token_id": 9}')
    assert eos_token_ids(str(tmp_path)) == {2, 7, 9}
    assert eos_token_ids("meta-llama/Llama-3.1-8B-Instruct") is None


def test_vllm_finish_reason_follows_vllms_length_rule():
    from medforge.engines.chat import _normalize_vllm_row, vllm_finish_reason

    assert vllm_finish_reason(10, 300, 300, 4096) == "length"
    assert vllm_finish_reason(10, 299, 300, 4096) == "stop"
    assert vllm_finish_reason(4000, 96, 300, 4096) == "length"  # the context window ran out first
    assert vllm_finish_reason(4000, 95, 300, None) == "stop"
    row = {"generated_text": "x", "num_input_tokens": 5, "num_generated_tokens": 8, "prompt": "p", "json_schema": ""}
    assert _normalize_vllm_row(row, max_tokens=8, max_model_len=None)["finish_reason"] == "length"
    # EOS as exactly the max_tokens-th token: vLLM says "stop", and so do we when we know the EOS ids
    assert _normalize_vllm_row({**row, "generated_tokens": [5, 2]}, max_tokens=8, eos_ids=frozenset({2}))["finish_reason"] == "stop"
    assert _normalize_vllm_row({**row, "generated_tokens": [5, 3]}, max_tokens=8, eos_ids=frozenset({2}))["finish_reason"] == "length"
    failed = _normalize_vllm_row({**row, "__inference_error__": "boom"}, max_tokens=8, max_model_len=None)
    assert failed["finish_reason"] == "" and failed["engine_error"] == "boom"


def test_parse_chat_reply_empty_content_and_missing_usage_are_empty_not_errors():
    out = parse_chat_reply({"choices": [{"message": {"content": None}}]})
    assert out["generated_text"] == "" and out["num_input_tokens"] == 0
    assert parse_chat_reply({"choices": []})["generated_text"] == ""


@pytest.mark.parametrize("body", [None, "garbage", [], {"error": "x"}, {"choices": "nope"}])
def test_parse_chat_reply_rejects_what_is_not_a_completion(body):
    with pytest.raises(ValueError, match="not a chat completion"):
        parse_chat_reply(body)


def test_parse_chat_reply_replaces_lone_surrogates_and_rejects_non_text_content():
    import json

    # what json.loads makes of a body with a "\ud800" escape: a lone surrogate, which no UTF-8 writer takes
    body = json.loads('{"choices": [{"message": {"content": "ok \\ud800 \\ud83d\\ude00"}}]}')
    text = parse_chat_reply(body)["generated_text"]
    assert text == "ok \ufffd \U0001F600" and text.encode("utf-8")
    with pytest.raises(ValueError, match="reply content is list, not text"):
        parse_chat_reply({"choices": [{"message": {"content": [{"type": "text", "text": "x"}]}}]})


def test_chat_request_body_carries_sampling_seed_and_schema_only_where_taken():
    from medforge.engines.config import OpenAITeacherConfig, SamplingConfig
    from medforge.engines.openai_client import chat_request_body

    teacher = OpenAITeacherConfig(base_url="http://127.0.0.1:1/v1", model="m")
    s = SamplingConfig(temperature=0.3, max_tokens=12)
    msgs = [{"role": "user", "content": "hi"}]
    body = chat_request_body(teacher, s, msgs, 7, {"type": "object"})
    assert body["model"] == "m" and body["seed"] == 7 and body["max_tokens"] == 12 and body["temperature"] == 0.3
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}
    plain = chat_request_body(teacher.model_copy(update={"structured_output": False}), s, msgs, 7, {"type": "object"})
    assert "response_format" not in plain


def test_client_retries_5xx_then_returns_the_reply_and_gives_up_on_4xx():
    import asyncio

    import httpx

    from medforge.engines.config import OpenAITeacherConfig, SamplingConfig
    from medforge.engines.openai_client import OpenAIChatClient

    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        body = json.loads(request.content)
        if body["messages"][0]["content"] == "bad":
            return httpx.Response(400, json={"error": "bad request"})
        if len(calls) < 3:
            return httpx.Response(503, json={"error": "busy"})
        return httpx.Response(200, json={"choices": [{"message": {"content": "ok"}}],
                                         "usage": {"prompt_tokens": 3, "completion_tokens": 1}})

    teacher = OpenAITeacherConfig(base_url="http://stub.invalid/v1", model="m", max_retries=3,
                                  backoff_base_s=0.01, backoff_max_s=0.02)

    async def go():
        c = OpenAIChatClient(teacher, SamplingConfig())
        c.client = c.client.with_options(http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
        ok = await c.chat([{"role": "user", "content": "hi"}], 1)
        n_ok = len(calls)
        bad = await c.chat([{"role": "user", "content": "bad"}], 1)
        return ok, n_ok, bad

    ok, n_ok, bad = asyncio.run(go())
    assert ok["generated_text"] == "ok" and ok["num_input_tokens"] == 3 and n_ok == 3
    assert len(calls) == 4  # a 400 is not retried
    assert bad["generated_text"] == "" and "BadRequestError" in bad["engine_error"]
