"""What every served route enforces: a bearer API key and a body-size limit; CORS closed by default.

:class:`GuardMiddleware` is plain ASGI, so it wraps the ``ray.serve.llm`` ingress and the QA
app alike. Keys are read from an environment variable and/or a file, compared with
:func:`hmac.compare_digest` (constant time) and never logged; a refused request is answered
here, before any body is read, and its reply names the problem but never echoes the input.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from typing import Any

from medforge.secrets import read_key_file
from medforge.serve.config import AuthConfig, SecurityConfig

logger = logging.getLogger(__name__)


class NoAPIKeysError(RuntimeError):
    """Serving without any key would leave every route open."""


def load_api_keys(auth: AuthConfig) -> list[str]:
    """The accepted keys (env var, comma-separated, and/or a file, one per line)."""
    keys: list[str] = []
    if auth.api_keys_env and os.environ.get(auth.api_keys_env):
        keys += [k.strip() for k in os.environ[auth.api_keys_env].split(",") if k.strip()]
    if auth.api_keys_file:
        try:
            keys += read_key_file(auth.api_keys_file)
        except FileNotFoundError as exc:
            raise NoAPIKeysError(f"api_keys_file: {exc}") from None
    if not keys:
        where = [f"${auth.api_keys_env}" if auth.api_keys_env else None, auth.api_keys_file]
        raise NoAPIKeysError(
            f"no API key configured (looked in {', '.join(w for w in where if w)}); "
            f"set e.g. {auth.api_keys_env or 'MEDFORGE_API_KEYS'}=$(openssl rand -hex 24) before starting Serve")
    return keys


def key_matches(presented: str, keys: list[str]) -> bool:
    """Constant-time membership: every key is compared (digests, so lengths leak nothing)."""
    p = hashlib.sha256(presented.encode()).digest()
    ok = False
    for k in keys:
        ok |= hmac.compare_digest(p, hashlib.sha256(k.encode()).digest())
    return ok


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            text = value.decode("latin-1")
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


async def _reply(send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": {"message": message, "type": "invalid_request", "code": status}}).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    hdrs += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """ASGI middleware: 401 without a valid bearer key, 413 over ``max_body_bytes``.

    ``/-/healthz``-style probes of Serve itself never reach a replica, so every route here is guarded.
    """

    def __init__(self, app: Any, auth: AuthConfig, max_body_bytes: int):
        # Starlette builds its middleware stack on the first request, so the keys are read in the
        # replica process and never travel inside the pickled deployment.
        self.app = app
        self.keys = load_api_keys(auth)
        self.max_body = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope.get("method") == "OPTIONS":  # CORS preflight carries no credentials
            return await self.app(scope, receive, send)
        token = bearer_token(scope.get("headers") or [])
        if token is None or not key_matches(token, self.keys):
            return await _reply(send, 401, "missing or invalid API key: send 'Authorization: Bearer <key>'",
                                {"www-authenticate": "Bearer"})
        declared = None
        for name, value in scope.get("headers") or []:
            if name.lower() == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return await _reply(send, 400, "bad Content-Length header")
        if declared is not None:
            if declared > self.max_body:
                return await _reply(send, 413, f"request body over the {self.max_body}-byte limit")
            return await self.app(scope, receive, send)
        # No Content-Length (chunked): read up to the limit here, then replay the body.
        chunks, total = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return None
            chunk = msg.get("body", b"")
            total += len(chunk)
            if total > self.max_body:
                return await _reply(send, 413, f"request body over the {self.max_body}-byte limit")
            chunks.append(chunk)
            if not msg.get("more_body"):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay_receive():
            return replay.pop() if replay else await receive()

        return await self.app(scope, replay_receive, send)


def secure_app(app: Any, security: SecurityConfig) -> Any:
    """Close CORS (or open it to the listed origins only) and put the guard in front of ``app``.

    Must be called on a FastAPI app before it serves: middlewares are added outermost-last.
    """
    if security.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(security.cors_origins), allow_credentials=False,
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])
    load_api_keys(security.auth)  # fail now, with the fix, rather than in every replica
    app.add_middleware(GuardMiddleware, auth=security.auth, max_body_bytes=security.max_body_bytes)
    return app
