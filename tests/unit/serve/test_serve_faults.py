"""A dead engine's 500 becomes 503 + Retry-After; nothing else changes (crafted ASGI replies, no Ray cluster)."""

from __future__ import annotations

import asyncio
import json

import pytest

from medforge.serve.faults import (
    _ENGINE_DEAD_MESSAGE,
    EngineRestartMiddleware,
    engine_dead_message,
    is_engine_dead_reply,
)

# The body ray.serve.llm's ingress answered, seen on this stack when the EngineCore was killed
# (RayTaskError(EngineDeadError) through the LLMServer handle, then get_response_for_error).
RID = "32e8ea3f-419d-4e5c-b1d9-426d00c4fa62"
RAY_ENGINE_DEAD_BODY = json.dumps({"error": {
    "message": f"Message: Internal Server Error (Request ID: {RID}), Internal exception: Internal Server Error "
               f"(Request ID: {RID}), original exception: ('{_ENGINE_DEAD_MESSAGE}', '{_ENGINE_DEAD_MESSAGE}')",
    "type": "InternalServerError", "code": 500}}).encode()
OTHER_500_BODY = json.dumps({"error": {
    "message": f"Message: Internal Server Error (Request ID: {RID}), Internal exception: Internal Server Error "
               f"(Request ID: {RID}), original exception: KeyError('x')", "type": "InternalServerError",
    "code": 500}}).encode()


def _reply_app(status: int, chunks: list[bytes], content_type: bytes = b"application/json"):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})
    return app


def _raising_app(exc: Exception):
    async def app(scope, receive, send):
        raise exc
    return app


def _call(app, retry_after_s: float = 2.0) -> list[dict]:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    asyncio.run(EngineRestartMiddleware(app, retry_after_s=retry_after_s)(scope, receive, send))
    return sent


def _status_headers_body(sent: list[dict]) -> tuple[int, dict[str, str], bytes]:
    start = sent[0]
    assert start["type"] == "http.response.start"
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


def test_the_engine_message_is_vllms():
    pytest.importorskip("vllm")
    assert engine_dead_message() == _ENGINE_DEAD_MESSAGE


@pytest.mark.parametrize("chunks", [[RAY_ENGINE_DEAD_BODY], [RAY_ENGINE_DEAD_BODY[:40], RAY_ENGINE_DEAD_BODY[40:]]],
                         ids=["one body", "body in two chunks"])
def test_engine_dead_500_becomes_503_with_retry_after(chunks):
    status, headers, body = _status_headers_body(_call(_reply_app(500, chunks), retry_after_s=1.5))
    assert status == 503 and headers["retry-after"] == "2"  # rounded up
    assert int(headers["content-length"]) == len(body)
    error = json.loads(body)["error"]
    assert error["code"] == 503 and "restarting" in error["message"]


def test_other_500s_and_4xx_pass_unchanged_even_when_they_mention_the_engine():
    for status, body in [(500, OTHER_500_BODY), (500, b"not json"), (500, RAY_ENGINE_DEAD_BODY.replace(b"EngineCore", b"Engine")),
                         (400, RAY_ENGINE_DEAD_BODY), (404, b'{"error": {"message": "model not found"}}'),
                         (422, RAY_ENGINE_DEAD_BODY)]:
        got_status, headers, got_body = _status_headers_body(_call(_reply_app(status, [body])))
        assert (got_status, got_body) == (status, body)
        assert "retry-after" not in headers


def test_a_stream_is_passed_through_as_it_comes():
    chunks = [b"data: {\"a\": 1}\n\n", b"data: [DONE]\n\n"]
    sent = _call(_reply_app(200, chunks, b"text/event-stream"))
    assert sent[0]["status"] == 200 and [m["body"] for m in sent[1:]] == chunks
    assert sent[1]["more_body"] is True  # not buffered into one body


def test_an_engine_dead_exception_before_any_reply_becomes_503_and_other_exceptions_propagate():
    status, headers, _ = _status_headers_body(_call(_raising_app(RuntimeError(f"('{_ENGINE_DEAD_MESSAGE}',)"))))
    assert status == 503 and headers["retry-after"] == "2"
    with pytest.raises(KeyError):
        _call(_raising_app(KeyError("a bug")))


def test_is_engine_dead_reply_only_for_500():
    assert is_engine_dead_reply(500, RAY_ENGINE_DEAD_BODY)
    assert not is_engine_dead_reply(502, RAY_ENGINE_DEAD_BODY)
    assert not is_engine_dead_reply(500, b'{"error": "a string"}')
    assert is_engine_dead_reply(500, b'{"error": {"type": "EngineDeadError", "message": ""}}')


def test_through_ray_llm_ingress_app_and_the_guard(monkeypatch):
    """The same stack as the LLM endpoint's ingress (Ray's FastAPI app with its error middleware,
    then ours, then the guard): a route raising vLLM's EngineDeadError gets 503 + Retry-After; a
    bad request, an unknown model and another failure keep their codes."""
    pytest.importorskip("vllm")
    from fastapi import HTTPException
    from fastapi.testclient import TestClient
    from vllm.v1.engine.exceptions import EngineDeadError

    from medforge.ray_compat import init_ingress_app
    from medforge.serve.config import SecurityConfig
    from medforge.serve.security import secure_app

    monkeypatch.setenv("MEDFORGE_API_KEYS", "k")
    app = init_ingress_app()

    @app.post("/dead")
    async def dead() -> dict:
        raise EngineDeadError()

    @app.post("/missing")
    async def missing() -> dict:
        raise HTTPException(status_code=404, detail="no such model")

    @app.post("/bug")
    async def bug() -> dict:
        raise KeyError("x")

    @app.post("/typed")
    async def typed(body: dict[str, int]) -> dict:
        return body

    app.add_middleware(EngineRestartMiddleware, retry_after_s=3)
    secure_app(app, SecurityConfig())
    client = TestClient(app, raise_server_exceptions=False)
    auth = {"Authorization": "Bearer k"}
    r = client.post("/dead", headers=auth)
    assert r.status_code == 503 and r.headers["retry-after"] == "3", r.text
    assert client.post("/dead").status_code == 401  # the guard still comes first
    assert client.post("/missing", headers=auth).status_code == 404
    r = client.post("/bug", headers=auth)
    assert r.status_code == 500 and "retry-after" not in r.headers
    assert client.post("/typed", headers=auth, json={"a": "not an int"}).status_code == 400
