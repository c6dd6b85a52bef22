"""Parsing an OpenAI-compatible chat-completions body into the engine's output columns."""

from __future__ import annotations

import pytest

from medforge.engines.chat import _parse_chat_reply


def test_parse_chat_reply_reads_text_and_usage():
    body = {"choices": [{"message": {"role": "assistant", "content": "hello"}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 2}}
    assert _parse_chat_reply(body) == {"generated_text": "hello", "num_input_tokens": 7,
                                       "num_generated_tokens": 2, "engine_error": ""}


def test_parse_chat_reply_empty_content_and_missing_usage_are_empty_not_errors():
    out = _parse_chat_reply({"choices": [{"message": {"content": None}}]})
    assert out["generated_text"] == "" and out["num_input_tokens"] == 0
    assert _parse_chat_reply({"choices": []})["generated_text"] == ""


@pytest.mark.parametrize("body", [None, "garbage", [], {"error": "x"}, {"choices": "nope"}])
def test_parse_chat_reply_rejects_what_is_not_a_completion(body):
    with pytest.raises(ValueError, match="not a chat completion"):
        _parse_chat_reply(body)


def test_parse_chat_reply_replaces_lone_surrogates_and_rejects_non_text_content():
    import json

    # what json.loads makes of a body with a "\ud800" escape: a lone surrogate, which no UTF-8 writer takes
    body = json.loads('{"choices": [{"message": {"content": "ok \\ud800 \\ud83d\\ude00"}}]}')
    text = _parse_chat_reply(body)["generated_text"]
    assert text == "ok \ufffd \U0001F600" and text.encode("utf-8")
    with pytest.raises(ValueError, match="reply content is list, not text"):
        _parse_chat_reply({"choices": [{"message": {"content": [{"type": "text", "text": "x"}]}}]})
