"""The context LLM of ``/v1/medqa`` when it is the LLM app served by the same Ray Serve instance.

The request goes through a Serve deployment handle to the app's ``LLMServer`` deployment (no
HTTP hop, no API key on loopback) but is built, retried, rate-limited and parsed by the same
:class:`medforge.engines.openai_client.OpenAIChatClient` as an external API's: only the
transport differs. The body is the OpenAI chat-completions body, validated into Ray Serve LLM's
``ChatCompletionRequest``; the reply is the ``ChatCompletionResponse`` as JSON, or an
``ErrorResponse``, raised as :class:`ServedLLMError` with its HTTP status.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from medforge.engines.config import OpenAITeacherConfig, SamplingConfig
from medforge.engines.engine import APIEngine, register_engine
from medforge.ray_compat import chat_completion_types


class ServedContextLLM(OpenAITeacherConfig):
    """``context_llm`` of kind ``serve``: the LLM app of this Serve instance, through a handle."""

    kind: Literal["serve"] = Field("serve", description="Engine kind.")  # type: ignore[assignment]
    base_url: str = Field("serve://", description="Unused: the request goes through a Serve handle.")
    model: str = Field(description="Model to ask: the LLM app's model_id, or one of its adapters.")
    app_name: str = Field("llm", description="Name of the LLM application in the same Serve instance.")
    base_model_id: str | None = Field(
        None, description="The LLM app's model_id (its LLMServer deployment); null: the same as `model`.")
    check_endpoint: bool = Field(False, description="Unused for a handle.")

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:  # replaces the http(s) check of the parent: nothing is dialled
        return v

    @property
    def deployment_name(self) -> str:
        # ray.serve.llm names the engine deployment of model_id M "LLMServer:M"
        return f"LLMServer:{self.base_model_id or self.model}"


class ServedLLMError(RuntimeError):
    """An error the served LLM answered with (its status code kept for the retry decision)."""

    def __init__(self, status_code: int, message: str):
        super().__init__(f"{status_code} {message}")
        self.status_code = status_code


class ServeHandleTransport:
    """``OpenAIChatClient`` transport over a Serve deployment handle (create it inside a replica)."""

    def __init__(self, cfg: ServedContextLLM):
        from ray import serve

        self.handle = serve.get_deployment_handle(cfg.deployment_name, app_name=cfg.app_name).options(stream=True)

    async def post(self, body: dict[str, Any]) -> dict[str, Any]:
        ChatCompletionRequest, ErrorResponse = chat_completion_types()
        request = ChatCompletionRequest.model_validate({**body, "stream": False})
        async for reply in self.handle.chat.remote(request, None):
            if isinstance(reply, ErrorResponse):
                raise ServedLLMError(int(reply.error.code), reply.error.message[:300])
            if isinstance(reply, list):  # a batched stream: not asked for (stream=False)
                raise ServedLLMError(500, "the served LLM streamed a reply to a non-streaming request")
            return reply.model_dump(mode="json")
        raise ServedLLMError(502, "the served LLM returned nothing")

    @staticmethod
    def retryable(exc: Exception) -> bool:
        import asyncio

        from ray import exceptions as rex
        from ray.serve.exceptions import BackPressureError

        if isinstance(exc, ServedLLMError):
            return exc.status_code == 429 or exc.status_code >= 500
        # a replica that died or is being replaced, a full queue, a slow reply: worth another try
        return isinstance(exc, (rex.RayActorError, rex.ActorUnavailableError, BackPressureError, asyncio.TimeoutError,
                                TimeoutError))


class ServeHandleEngine(APIEngine):
    """The engine of ``kind: serve``: the API engine's client (body, retries, limiter, parsing) over
    a Serve handle. It answers single requests in a Serve replica (``client``); batch jobs reach the
    same app over HTTP with ``kind: openai``."""

    def check_endpoint(self) -> None:
        """Nothing to dial: the handle is resolved in the replica."""

    def transport(self) -> ServeHandleTransport:
        return ServeHandleTransport(self.cfg)

    def chat(self, ds, sampling: SamplingConfig, schema: dict[str, Any] | None = None):
        raise TypeError("a Serve-handle engine (kind: serve) answers requests inside Serve only; a batch job reaches "
                        "the same LLM app with kind: openai and the app's URL")


register_engine(ServedContextLLM, ServeHandleEngine)
