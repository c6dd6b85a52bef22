"""Auth, body limit and CORS of the served apps, on a plain FastAPI app (no Ray)."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from medforge.serve.config import AuthConfig, SecurityConfig
from medforge.serve.security import NoAPIKeysError, key_matches, load_api_keys, secure_app

SECRET = "sk-test-0123456789"


def _client(monkeypatch, **security) -> TestClient:
    monkeypatch.setenv("MEDFORGE_API_KEYS", f"other-key, {SECRET}")
    app = FastAPI()

    @app.post("/echo")
    async def echo(body: dict) -> dict:
        return {"n": len(body)}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"data": []}

    secure_app(app, SecurityConfig(**security))
    return TestClient(app)


def test_keys_from_env_and_file(tmp_path, monkeypatch):
    f = tmp_path / "keys"
    f.write_text("# ops keys\nfile-key\n\n")
    monkeypatch.setenv("K", "a,b")
    assert load_api_keys(AuthConfig(api_keys_env="K", api_keys_file=str(f))) == ["a", "b", "file-key"]
    monkeypatch.delenv("K")
    with pytest.raises(NoAPIKeysError, match=r"no API key configured.*\$K"):
        load_api_keys(AuthConfig(api_keys_env="K"))
    with pytest.raises(NoAPIKeysError, match="does not exist"):
        load_api_keys(AuthConfig(api_keys_env=None, api_keys_file=str(tmp_path / "missing")))


def test_key_matches():
    assert key_matches("b", ["a", "b"])
    assert not key_matches("c", ["a", "b"]) and not key_matches("", ["a"]) and not key_matches("a" * 100, ["a"])


def test_every_route_needs_a_valid_bearer_key_and_keys_are_not_logged(monkeypatch, caplog):
    c = _client(monkeypatch)
    caplog.set_level(logging.DEBUG)
    assert c.get("/v1/models").status_code == 401
    r = c.get("/v1/models", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert c.get("/v1/models", headers={"Authorization": f"Basic {SECRET}"}).status_code == 401
    assert c.post("/echo", json={"q": "x"}).status_code == 401
    assert c.get("/v1/models", headers={"Authorization": f"Bearer {SECRET}"}).status_code == 200
    assert c.get("/v1/models", headers={"Authorization": "Bearer other-key"}).status_code == 200
    assert SECRET not in caplog.text and "wrong" not in caplog.text


def test_oversized_body_gets_413_declared_or_streamed(monkeypatch):
    c = _client(monkeypatch, max_body_bytes=2048)
    auth = {"Authorization": f"Bearer {SECRET}"}
    assert c.post("/echo", json={"q": "x" * 100}, headers=auth).status_code == 200
    r = c.post("/echo", json={"q": "x" * 5000}, headers=auth)
    assert r.status_code == 413 and "2048-byte limit" in r.json()["error"]["message"]

    def chunks():
        yield b'{"q": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    r = c.post("/echo", content=chunks(), headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 413


def test_cors_closed_by_default_and_open_only_to_listed_origins(monkeypatch):
    pre = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    closed = _client(monkeypatch)
    r = closed.options("/echo", headers=pre)
    assert "access-control-allow-origin" not in r.headers
    opened = _client(monkeypatch, cors_origins=["https://ward.example"])
    assert "access-control-allow-origin" not in opened.options("/echo", headers=pre).headers
    ok = opened.options("/echo", headers={**pre, "Origin": "https://ward.example"})
    assert ok.headers["access-control-allow-origin"] == "https://ward.example"
