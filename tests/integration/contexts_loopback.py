"""A recording OpenAI-compatible server on 127.0.0.1 for the context-generation tests and bench.

It answers ``POST /v1/chat/completions`` with a canned, well-formed context reply built from
the options in the request, logs every request (arrival time, body, status, tokens), and
injects faults deterministically: among *first* attempts of distinct request bodies, slot
``n % period`` decides 429 / 500 / timeout (sleeps past the client timeout) / empty text /
garbage text. A retried body always succeeds, so tests are bounded and never flaky.

Run standalone (bench): ``python tests/integration/contexts_loopback.py --port 8711 --no-log``.
"""



import argparse
import asyncio
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

_LETTER = re.compile(r"^\(([A-J])\) ", re.M)


@dataclass
class Faults:
    period: int = 0  # 0: no faults
    # n % period -> "429" | "500" | "timeout" | "empty" | "garbage" | "surrogate"
    slots: dict[int, str] = field(default_factory=dict)
    timeout_sleep_s: float = 2.0


@dataclass
class Recorder:
    log_bodies: bool = True
    requests: list[dict[str, Any]] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)
    first_attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def canned_reply(messages: list[dict[str, Any]]) -> str:
    letters = _LETTER.findall(messages[-1]["content"]) or ["A", "B"]
    return json.dumps({
        "overall_context": "The keywords describe a clinical picture; the options are weighed against it.",
        "option_contexts": {k: f"Option {k} is considered against the keywords." for k in letters},
        "preliminary_answer": letters[0],
    })


def build_app(rec: Recorder, faults: Faults):
    from fastapi import FastAPI, Request, Response
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": "loopback", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        raw = await request.body()
        t = time.time()
        body = json.loads(raw)
        key = hashlib.sha256(raw).hexdigest()
        with rec.lock:
            attempt = rec.seen.get(key, 0)
            rec.seen[key] = attempt + 1
            fault = None
            if attempt == 0:
                if faults.period:
                    fault = faults.slots.get(rec.first_attempts % faults.period)
                rec.first_attempts += 1
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in body["messages"]) // 4
        entry = {"t": t, "status": 200, "prompt_tokens": prompt_tokens, "completion_tokens": 0, "fault": fault}
        if rec.log_bodies:  # the bench runs without a log: a million entries would skew its memory
            entry["body"] = raw.decode()
            with rec.lock:
                rec.requests.append(entry)
        if fault == "429":
            entry["status"] = 429
            return JSONResponse({"error": {"message": "rate limited", "type": "rate_limit"}}, status_code=429)
        if fault == "500":
            entry["status"] = 500
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        if fault == "timeout":
            entry["status"] = 0
            await asyncio.sleep(faults.timeout_sleep_s)
        content = {"empty": "", "garbage": "lorem ipsum }{ not a context",
                   "surrogate": "lone \ud800 surrogate"}.get(fault or "", None)
        if content is None:
            content = canned_reply(body["messages"])
        entry["completion_tokens"] = len(content) // 4
        reply = {
            "id": "cmpl-1", "object": "chat.completion", "created": int(t), "model": body.get("model", "loopback"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": entry["completion_tokens"],
                      "total_tokens": prompt_tokens + entry["completion_tokens"]},
        }
        if fault == "surrogate":  # valid JSON ("\ud800" escape) that decodes to a string UTF-8 cannot hold
            return Response(json.dumps(reply), media_type="application/json")
        return reply

    return app


class LoopbackServer:
    """uvicorn in a daemon thread; ``with LoopbackServer(...) as s: s.base_url``."""

    def __init__(self, faults: Faults | None = None, port: int = 0, log_bodies: bool = True):
        import socket

        self.rec = Recorder(log_bodies=log_bodies)
        self.faults = faults or Faults()
        if not port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def __enter__(self) -> "LoopbackServer":
        import uvicorn

        config = uvicorn.Config(build_app(self.rec, self.faults), host="127.0.0.1", port=self.port,
                                log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("loopback server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


if __name__ == "__main__":
    import uvicorn

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8711)
    ap.add_argument("--no-log", action="store_true")
    a = ap.parse_args()
    uvicorn.run(build_app(Recorder(log_bodies=not a.no_log), Faults()), host="127.0.0.1", port=a.port,
                log_level="warning", access_log=False)
