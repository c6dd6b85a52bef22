"""A dead vLLM engine answers ``503`` + ``Retry-After`` while Serve replaces its replica, not ``500``.

When the EngineCore process under an ``LLMServer`` replica dies (OOM killer, a crashed
kernel), every request to that replica fails at once with vLLM's ``EngineDeadError`` until
Serve's health check replaces the replica (here about 30 s of failures, then requests queue
for the new engine's start). ``ray.serve.llm`` reports those failures as ``500 Internal Server
Error`` whose JSON body carries the engine's message in ``original exception: ...``. A 500
tells a client "bug, do not retry"; the replica is in fact being restarted, which is what
``503`` + ``Retry-After`` says.

:class:`EngineRestartMiddleware` is plain ASGI around the LLM ingress. It buffers only the
body of a ``500`` response (a small JSON error; every other status, and every stream that has
begun with ``200``, passes through untouched), and turns it into a ``503`` only when the error
is vLLM's engine-dead error; any other 500, and every 4xx, is left as it is.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from typing import Any

logger = logging.getLogger(__name__)

# vLLM's EngineDeadError message (vllm/v1/engine/exceptions.py); read from vLLM when it is
# installed, this copy only where it is not (a unit test keeps the two equal).
_ENGINE_DEAD_MESSAGE = "EngineCore encountered an issue. See stack trace (above) for the root cause."


@functools.cache
def engine_dead_message() -> str:
    """The message every ``EngineDeadError`` carries."""
    try:
        from vllm.v1.engine.exceptions import EngineDeadError
    except ImportError:
        return _ENGINE_DEAD_MESSAGE
    return str(EngineDeadError())


def is_engine_dead_error(exc: BaseException) -> bool:
    """``exc`` is vLLM's ``EngineDeadError`` (also as Ray's ``RayTaskError(EngineDeadError)``
    re-raised through a Serve handle), or says so in its text."""
    try:
        from vllm.v1.engine.exceptions import EngineDeadError

        if isinstance(exc, EngineDeadError):
            return True
    except ImportError:
        pass
    return engine_dead_message() in str(exc)


def is_engine_dead_reply(status: int, body: bytes) -> bool:
    """A ``500`` whose JSON error (OpenAI shape, ``{"error": {"message", "type", ...}}``, as
    ``ray.serve.llm`` writes it) is the engine-dead error. Anything else is not."""
    if status != 500:
        return False
    try:
        error = json.loads(body).get("error")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return False
    if not isinstance(error, dict):
        return False
    return error.get("type") == "EngineDeadError" or engine_dead_message() in str(error.get("message", ""))


def retry_after_header(retry_after_s: float) -> str:
    """``Retry-After`` in whole seconds, rounded up (as Ray Serve's own 503 does)."""
    return str(math.ceil(retry_after_s))


def engine_restarting_reply(retry_after_s: float) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """``(status, headers, body)`` of the 503 a client gets while the engine restarts."""
    body = json.dumps({"error": {
        "message": "the model's engine is restarting; retry later (see Retry-After)",
        "type": "ServiceUnavailableError", "code": 503}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"retry-after", retry_after_header(retry_after_s).encode())]
    return 503, headers, body


class EngineRestartMiddleware:
    """ASGI middleware: an engine-dead ``500`` (a reply, or an exception escaping the app before
    any reply started) becomes ``503`` + ``Retry-After: <retry_after_s>``."""

    def __init__(self, app: Any, retry_after_s: float):
        self.app = app
        self.retry_after_s = retry_after_s

    async def _send_restarting(self, send) -> None:
        status, headers, body = engine_restarting_reply(self.retry_after_s)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        held: dict[str, Any] = {}  # the start message of a 500, held until its body is complete
        chunks: list[bytes] = []
        started = False

        async def guarded_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                if message["status"] == 500:
                    held["start"] = message
                    return None
                started = True
                return await send(message)
            if message["type"] == "http.response.body" and "start" in held:
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return None
                start, body = held.pop("start"), b"".join(chunks)
                started = True
                if is_engine_dead_reply(500, body):
                    logger.warning("engine dead: answering 503 + Retry-After while Serve restarts the replica")
                    return await self._send_restarting(send)
                await send(start)
                return await send({"type": "http.response.body", "body": body})
            return await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except Exception as exc:
            if started or not is_engine_dead_error(exc):
                raise
            logger.warning("engine dead (%s): answering 503 + Retry-After", type(exc).__name__)
            await self._send_restarting(send)
