"""``POST /v1/medqa`` on real Ray Serve: tiny MC export, context LLM = recording loopback API.

The loopback server stands in for the external context LLM (a paid API) and records every
request, so the test sees exactly what left the site. One Ray cluster and one Serve instance
for the module; the context-mode, SLM-only and real-small-encoder (all-MiniLM-L6-v2) apps run
side by side on different prefixes.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from contexts_loopback import LoopbackServer  # noqa: E402
from jobutils import free_port  # noqa: E402

pytestmark = pytest.mark.integration

KEY = "sk-medqa-test-91c2"
QUESTION = ("Mrs. Edna Vasquez-Thornbury, MRN 88120347, a 45-year-old woman from Springfield, "
            "has fever, productive cough and pleuritic chest pain for 3 days.")
OPTIONS = {"A": "Community-acquired pneumonia", "B": "Pulmonary embolism", "C": "Asthma", "D": "Pneumothorax"}
SECRETS = ("Edna", "Vasquez-Thornbury", "88120347", "Springfield")



def _mc_export(bert: Path, out: Path, use_context: bool) -> Path:
    import torch
    from transformers import AutoModelForMultipleChoice, AutoTokenizer

    from medforge.mc.encoding import MCFormat
    from medforge.mc.scorer import save_mc_export

    torch.manual_seed(0)
    model = AutoModelForMultipleChoice.from_pretrained(bert)
    tok = AutoTokenizer.from_pretrained(bert)
    return save_mc_export(out, model, tok, MCFormat(max_length=96, use_context=use_context, num_options=4,
                                                    labels=list("ABCD")))


@pytest.fixture(scope="module")
def medqa(tiny_models, small_models, tmp_path_factory):
    import ray
    from ray import serve

    from medforge.serve.cli import run_serve, without_ingress_drain

    tmp = tmp_path_factory.mktemp("medqa")
    ctx_model = _mc_export(tiny_models["bert"], tmp / "mc_ctx", use_context=True)
    plain_model = _mc_export(tiny_models["bert"], tmp / "mc_plain", use_context=False)
    # the real small encoder (all-MiniLM-L6-v2, real vocabulary and weights; its MC head is untrained)
    small_model = _mc_export(small_models["encoder"], tmp / "mc_small", use_context=True)
    os.environ["MEDFORGE_API_KEYS"] = KEY
    port = free_port()
    with LoopbackServer() as llm:
        common = {"security": {"max_body_bytes": 32768}, "max_batch_size": 8, "batch_wait_timeout_s": 0.02}
        data = {"http_options": {"host": "127.0.0.1", "port": port}, "applications": [
            {"name": "medqa", "route_prefix": "/v1/medqa", "import_path": "medforge.serve.qa:app_builder",
             "args": {"mc_model": str(ctx_model), **common,
                      "context_llm": {"kind": "openai", "base_url": llm.base_url, "model": "loopback",
                                      "max_retries": 2, "backoff_base_s": 0.05, "timeout_s": 10}}},
            {"name": "medqa-plain", "route_prefix": "/v1/medqa-plain", "import_path": "medforge.serve.qa:app_builder",
             "args": {"mc_model": str(plain_model), **common}},
            {"name": "medqa-small", "route_prefix": "/v1/medqa-small", "import_path": "medforge.serve.qa:app_builder",
             "args": {"mc_model": str(small_model), **common,
                      "context_llm": {"kind": "openai", "base_url": llm.base_url, "model": "loopback",
                                      "max_retries": 2, "backoff_base_s": 0.05, "timeout_s": 10}}},
        ]}
        ray.init(address="local", num_cpus=6, include_dashboard=False, log_to_driver=False)
        try:
            run_serve(without_ingress_drain(data), None, None, blocking=False)
            logs = Path(ray._private.worker.global_worker.node.get_session_dir_path()) / "logs"
            yield {"url": f"http://127.0.0.1:{port}", "llm": llm, "logs": logs}
        finally:
            serve.shutdown()
            ray.shutdown()
            os.environ.pop("MEDFORGE_API_KEYS", None)


def _post(url: str, body, key: str | None = KEY, raw: bytes | None = None):
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if raw is not None:
        return httpx.post(url, content=raw, headers={**headers, "Content-Type": "application/json"}, timeout=60)
    return httpx.post(url, json=body, headers=headers, timeout=60)


def test_answer_is_an_option_probabilities_sum_to_one_and_only_keywords_left_the_site(medqa):
    n_before = len(medqa["llm"].rec.requests)
    r = _post(f"{medqa['url']}/v1/medqa", {"question": QUESTION, "options": OPTIONS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer"] in OPTIONS and body["answer_text"] == OPTIONS[body["answer"]]
    assert set(body["probabilities"]) == set(OPTIONS)
    assert abs(sum(body["probabilities"].values()) - 1.0) < 1e-5
    assert body["mode"] == "context" and "context" not in body  # context only on request
    assert "fever" in body["sent"]["keywords"] and body["sent"]["options"] == OPTIONS
    assert set(body["timings_ms"]) == {"keywords_ms", "context_ms", "slm_ms"}
    # what the context LLM received is exactly what the reply says left the site
    sent = medqa["llm"].rec.requests[n_before:]
    assert len(sent) == 1
    wire = sent[0]["body"]
    assert not any(s in wire for s in SECRETS) and "productive cough and pleuritic" not in wire
    last_user = json.loads(wire)["messages"][-1]["content"]
    for kw in body["sent"]["keywords"]:
        assert kw in last_user
    with_ctx = _post(f"{medqa['url']}/v1/medqa", {"question": QUESTION, "options": list(OPTIONS.values()),
                                                  "return_context": True}).json()
    assert set(with_ctx["context"]["option_contexts"]) == set(OPTIONS) and with_ctx["context"]["overall_context"]


def test_real_small_encoder_end_to_end(medqa):
    """The same endpoint with all-MiniLM-L6-v2 (the real small model) as the scorer: real WordPiece
    tokens of the context and options. Its head is untrained, so only the contract is checked."""
    n_before = len(medqa["llm"].rec.requests)
    r = _post(f"{medqa['url']}/v1/medqa-small", {"question": QUESTION, "options": OPTIONS, "return_context": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer"] in OPTIONS and body["answer_text"] == OPTIONS[body["answer"]]
    assert set(body["probabilities"]) == set(OPTIONS) and abs(sum(body["probabilities"].values()) - 1.0) < 1e-5
    assert body["answer"] == max(body["probabilities"], key=body["probabilities"].get)
    assert len(set(body["probabilities"].values())) > 1  # real weights: the options are told apart
    assert set(body["context"]["option_contexts"]) == set(OPTIONS)
    wire = medqa["llm"].rec.requests[n_before]["body"]
    assert not any(s in wire for s in SECRETS)


def test_slm_only_mode_sends_nothing(medqa):
    n_before = len(medqa["llm"].rec.requests)
    r = _post(f"{medqa['url']}/v1/medqa-plain", {"question": QUESTION, "options": {"A": "yes", "B": "no"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mode"] == "slm_only" and body["sent"] == {"keywords": [], "options": {}}
    assert body["answer"] in ("A", "B") and abs(sum(body["probabilities"].values()) - 1) < 1e-5
    assert len(medqa["llm"].rec.requests) == n_before


def test_slm_only_request_on_a_context_model_sends_nothing_and_differs_from_the_context_reply(medqa):
    """``slm_only: true`` on a context-trained export: no keyword extraction, no LLM call; the same
    scorer then sees the question and options only, so its probabilities differ from the context reply."""
    url = f"{medqa['url']}/v1/medqa-small"
    with_ctx = _post(url, {"question": QUESTION, "options": OPTIONS})
    n_before = len(medqa["llm"].rec.requests)
    alone = _post(url, {"question": QUESTION, "options": OPTIONS, "slm_only": True, "return_context": True})
    assert with_ctx.status_code == alone.status_code == 200, (with_ctx.text, alone.text)
    a, c = alone.json(), with_ctx.json()
    assert a["mode"] == "slm_only" and a["sent"] == {"keywords": [], "options": {}} and "context" not in a
    assert c["mode"] == "context" and c["sent"]["keywords"]
    assert len(medqa["llm"].rec.requests) == n_before  # nothing left the site
    assert abs(sum(a["probabilities"].values()) - 1) < 1e-5 and a["probabilities"] != c["probabilities"]


@pytest.mark.parametrize("case", ["no_key", "wrong_key", "malformed_json", "missing_field", "one_option",
                                  "eleven_options", "oversized", "bad_label", "extra_field", "question_too_long"])
def test_bad_requests_get_4xx_and_the_question_is_never_logged(medqa, case):
    url = f"{medqa['url']}/v1/medqa"
    good = {"question": QUESTION, "options": OPTIONS}
    r = {
        "no_key": lambda: _post(url, good, key=None),
        "wrong_key": lambda: _post(url, good, key="not-it"),
        "malformed_json": lambda: _post(url, None, raw=b'{"question": "' + QUESTION.encode() + b'", "options": {'),
        "missing_field": lambda: _post(url, {"question": QUESTION}),
        "one_option": lambda: _post(url, {"question": QUESTION, "options": {"A": "only"}}),
        "eleven_options": lambda: _post(url, {"question": QUESTION, "options": [f"o{i}" for i in range(11)]}),
        "oversized": lambda: _post(url, {"question": QUESTION * 400, "options": OPTIONS}),
        "bad_label": lambda: _post(url, {"question": QUESTION, "options": {"A": "x", "Z9": "y"}}),
        "extra_field": lambda: _post(url, {**good, "patient_name": "Edna"}),
        "question_too_long": lambda: _post(url, {"question": "fever " * 1000, "options": OPTIONS}),
    }[case]()
    assert 400 <= r.status_code < 500, (case, r.status_code)
    assert "Vasquez-Thornbury" not in r.text and "88120347" not in r.text  # replies never echo the input
    time.sleep(0.5)
    logged = b"".join(p.read_bytes() for p in medqa["logs"].rglob("*") if p.is_file())
    assert b"Vasquez-Thornbury" not in logged and b"88120347" not in logged and KEY.encode() not in logged


def test_concurrent_requests_are_batched_and_a_bounded_load_has_no_5xx(medqa):
    import httpx

    n_clients, seconds = 8, 6.0
    lat: list[float] = []
    codes: dict[int, int] = {}

    async def client(i: int) -> None:
        async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {KEY}"}) as c:
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                r = await c.post(f"{medqa['url']}/v1/medqa",
                                 json={"question": f"Case {i}: fever and cough.", "options": OPTIONS})
                lat.append(time.perf_counter() - t0)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1

    async def main() -> None:
        await asyncio.gather(*(client(i) for i in range(n_clients)))

    asyncio.run(main())
    assert codes.get(200, 0) >= n_clients and not any(c >= 500 for c in codes), codes
    lat.sort()
    print(f"\nmedqa load: {n_clients} clients x {seconds:.0f}s: {len(lat)} requests, codes {codes}, "
          f"p50 {statistics.median(lat) * 1000:.0f} ms, p99 {lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000:.0f} ms")
