"""A minimal OpenAI-compatible chat server on loopback: stands in for a paid API in tests.

It answers task-generation requests with well-formed tasks (varied wording, so the novelty
filter keeps many), multiple-choice requests with ``{"explanation", "answer"}``, and other
requests with plain text. ``fail_every`` makes every n-th request a 429 or 500 so retries
are exercised. ``responder(body)`` scripts the reply text (return ``None`` to fall back to the
defaults above), e.g. a judge whose verdicts are fixed; a ``(text, finish_reason)`` pair also
sets the reply's ``finish_reason`` (``"length"``: cut at max_tokens). ``fault(n, body)`` scripts failures
that retries do not cure: return ``None`` to answer normally, or ``(status, headers)`` to fail
request ``n`` (1-based, retries included) -- a lasting outage, a 401 from the n-th request until
the test "fixes the key", a 400 for everything, a 429 with ``Retry-After``. Every request body
is recorded, and ``log`` holds ``(monotonic time, n, status)`` per request.

``keyed=True`` makes every reply a function of the request alone (its messages and ``seed``), not
of the order requests arrive in: two runs of the same job config then get the same replies however
their requests interleave or are retried, as a seeded vLLM teacher gives. ``delay_s`` holds each
reply that long (a slow API: a backlog builds up in front of the client actors).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORDS = ("anemia asthma sepsis gout migraine stroke eczema lupus angina malaria pneumonia cirrhosis psoriasis "
         "glaucoma hepatitis epilepsy scurvy rickets tetanus measles mumps rubella").split()
# letters only: the task check (generate.filters.task_check) rejects "words" with digits
VOCAB = [w + suffix for w in WORDS for suffix in ("", "s", "ic", "oid")]
VERBS = ("Explain", "Summarize", "Describe", "Compare", "Outline", "List", "Discuss", "Classify")


class StubOpenAI:
    def __init__(self, fail_every: int = 0, responder=None, fault=None, keyed: bool = False, delay_s: float = 0.0):
        self.keyed = keyed
        self.delay_s = delay_s
        self.fail_every = fail_every
        self.responder = responder
        self.fault = fault
        self.log: list[tuple[float, int, int]] = []
        self.bodies: list[dict] = []
        self._count = itertools.count(1)
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, code: int, obj: dict) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": "stub-teacher", "object": "model"}]})

            def do_POST(self):
                import time

                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub._lock:
                    n = next(stub._count)
                    stub.bodies.append(body)
                scripted = stub.fault(n, body) if stub.fault else None
                with stub._lock:
                    stub.log.append((time.monotonic(), n, scripted[0] if scripted else 200))
                if scripted:
                    code, headers = scripted
                    data = json.dumps({"error": {"message": f"injected {code}", "type": "test", "code": code}}).encode()
                    self.send_response(code)
                    for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if stub.fail_every and n % stub.fail_every == 0:
                    code = 429 if n % (2 * stub.fail_every) == 0 else 500
                    self._send(code, {"error": {"message": "injected failure", "type": "test"}})
                    return
                if stub.delay_s:
                    time.sleep(stub.delay_s)
                self._send(200, stub.reply(body, n))

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # the default backlog of 5 refuses connections under 32 concurrent clients

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def request_key(body: dict) -> int:
        """A number that depends on the request only (messages and seed)."""
        text = json.dumps([body.get("messages"), body.get("seed")], sort_keys=True)
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:6], "little")

    def reply(self, body: dict, n: int) -> dict:
        if self.keyed:
            n = self.request_key(body)
        schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema") or {}
        props = schema.get("properties", {})
        scripted = self.responder(body) if self.responder else None
        finish = "stop"
        if isinstance(scripted, tuple):
            scripted, finish = scripted
        if scripted is not None:
            content = scripted
        elif "tasks" in props:
            k = props["tasks"]["minItems"]
            tasks = []
            for j in range(k):
                rng = random.Random(n * 1000 + j)
                words = rng.sample(VOCAB, 10)
                tasks.append({"type": "Open Q&A", "topic": words[0], "view": "Medical student",
                              "difficulty": 1 + (n + j) % 5,
                              "instruction": f"{rng.choice(VERBS)} {' '.join(words)}.", "input": "<noinput>"})
            content = json.dumps({"tasks": tasks})
        elif "answer" in props:
            content = json.dumps({"explanation": "Stub reasoning.", "answer": props["answer"]["enum"][0]})
        else:
            content = f"Stub answer number {n}."
        return {"id": f"c{n}", "object": "chat.completion", "model": body.get("model", "stub"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
                "usage": {"prompt_tokens": 10, "completion_tokens": len(content) // 4, "total_tokens": 10 + len(content) // 4}}

    def __enter__(self) -> StubOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
