"""The served context LLM of /v1/medqa: config and the Serve-handle transport's retry decision."""

from __future__ import annotations

import asyncio

import pytest

from medforge.engines.config import OpenAITeacherConfig, SamplingConfig
from medforge.engines.openai_client import OpenAIChatClient
from medforge.serve.context_llm import ServedContextLLM, ServedLLMError, ServeHandleTransport
from medforge.serve.qa import QAServeConfig


def test_context_llm_kind_selects_http_or_serve_handle(tmp_path):
    base = {"mc_model": str(tmp_path)}
    http = QAServeConfig.model_validate({**base, "context_llm": {"kind": "openai", "base_url": "http://x/v1", "model": "m"}})
    assert type(http.context_llm) is OpenAITeacherConfig
    served = QAServeConfig.model_validate({**base, "context_llm": {"kind": "serve", "model": "tuned", "base_model_id": "base"}})
    assert isinstance(served.context_llm, ServedContextLLM) and served.context_llm.deployment_name == "LLMServer:base"
    assert ServedContextLLM(model="m").deployment_name == "LLMServer:m" and ServedContextLLM(model="m").app_name == "llm"
    with pytest.raises(Exception, match="base_url"):  # an HTTP context LLM still needs a real URL
        QAServeConfig.model_validate({**base, "context_llm": {"kind": "openai", "base_url": "serve://", "model": "m"}})


def test_handle_transport_retries_server_errors_and_overload_not_bad_requests():
    from ray.serve.exceptions import BackPressureError

    assert ServeHandleTransport.retryable(ServedLLMError(503, "engine restarting"))
    assert ServeHandleTransport.retryable(ServedLLMError(429, "slow down"))
    assert not ServeHandleTransport.retryable(ServedLLMError(400, "prompt too long"))
    assert ServeHandleTransport.retryable(BackPressureError(num_queued_requests=2, max_queued_requests=2))
    assert not ServeHandleTransport.retryable(ValueError("bad"))


class _FakeTransport:
    """Stands in for the Serve handle (the integration test uses the real one): fails, then answers."""

    def __init__(self, failures: list[Exception]):
        self.failures, self.bodies = failures, []

    async def post(self, body):
        self.bodies.append(body)
        if self.failures:
            raise self.failures.pop(0)
        return {"choices": [{"message": {"content": "{}"}}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}

    retryable = staticmethod(ServeHandleTransport.retryable)


def test_client_keeps_its_body_retries_and_error_records_over_a_transport():
    cfg = ServedContextLLM(model="m", max_retries=2, backoff_base_s=0.01)
    t = _FakeTransport([ServedLLMError(503, "restarting")])
    out = asyncio.run(OpenAIChatClient(cfg, SamplingConfig(max_tokens=7), transport=t).chat([{"role": "user", "content": "hi"}], 5))
    assert out["engine_error"] == "" and out["num_generated_tokens"] == 1 and len(t.bodies) == 2
    assert t.bodies[0]["model"] == "m" and t.bodies[0]["max_tokens"] == 7 and t.bodies[0]["seed"] == 5
    t = _FakeTransport([ServedLLMError(400, "prompt too long")])
    out = asyncio.run(OpenAIChatClient(cfg, SamplingConfig(), transport=t).chat([{"role": "user", "content": "hi"}], 5))
    assert "400 prompt too long" in out["engine_error"] and len(t.bodies) == 1  # not retried
