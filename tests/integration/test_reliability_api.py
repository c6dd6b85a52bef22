"""Failure handling against loopback OpenAI-compatible servers (issue 13; docs/reliability.md).

Faults that retries do not cure: a 401 from the middle of a run until the key is "fixed", a 400
for every request, a lasting outage, a 429 with Retry-After, retries running out for some rows.
Each test checks: the job stops (or finishes) with the clear message, nothing failed is marked
done, and after the fault is gone the same command finishes with every row done exactly once.
Small row counts and one Ray cluster for the module keep this to about a minute of work.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from jobutils import api_teacher_config, dataset_lost_and_duplicated, read_jsonl
from openai_stub import StubOpenAI

from medforge.engines.breaker import circuit_message

sys.path.insert(0, str(Path(__file__).parent))

pytestmark = pytest.mark.integration
FAULTS: list[dict] = []  # rows for docs/reliability.md, printed at the end of the module


@pytest.fixture(scope="module")
def ray_cluster(shared_ray):
    """The session's shared local Ray (tests/integration/conftest.py)."""
    yield
    for f in FAULTS:
        print("FAULT", json.dumps(f))


def _gen_cfg(url, out, **extra):
    ov = {"budget.target_tasks": 24, "budget.max_rounds": 12, "responses.chunk_size": 8,
          "generation.requests_per_round": 4, "engine.backoff_max_s": 0.05, "engine.max_retries": 2,
          "engine.check_endpoint": "false", "engine.concurrency": 1, "engine.max_concurrent_requests": 4,
          "engine.batch_size": 4, "engine.breaker.max_consecutive_fatal": 6,
          "engine.breaker.max_consecutive_failures": 12, **extra}
    return api_teacher_config(url, out, out, **ov)


def test_401_mid_run_stops_fast_then_resumes_exactly_once(ray_cluster, tmp_path):
    from medforge.generate.pipeline import run_generate

    key_ok = threading.Event()
    key_ok.set()
    revoked_at: list[int] = []

    def fault(n, body):
        if n == 9 and key_ok.is_set():  # the key is revoked after 8 requests
            key_ok.clear()
            revoked_at.append(n)
        return None if key_ok.is_set() else (401, {})

    out = tmp_path / "run401"
    with StubOpenAI(fault=fault) as stub:
        with pytest.raises(Exception) as info:
            run_generate(_gen_cfg(stub.url, out))
        assert re.search(r"401 unauthorized.*api_key_env.*resumes", circuit_message(info.value) or "")
        sent_while_revoked = sum(1 for _, n, code in stub.log if code == 401)
        saved_rounds = len(list((out / "raw").glob("round_*.jsonl")))
        assert saved_rounds >= 1  # the rounds before the revocation are kept
        for p in (out / "raw").glob("round_*.jsonl"):  # no round saved with only failures
            assert any(not r.get("engine_error") for r in read_jsonl(p))
        key_ok.set()  # the operator fixes the key and runs the same command
        summary = run_generate(_gen_cfg(stub.url, out))
    # Per stream at most the breaker bound (6) plus one batch in flight (4); a round whose requests all
    # failed restarts the stream, at most MAX_FAILED_ROUNDS times. The budget was 12 rounds x 4 + 24 responses.
    from medforge.generate.pipeline import MAX_FAILED_ROUNDS

    assert sent_while_revoked <= MAX_FAILED_ROUNDS * (6 + 4)
    assert summary.accepted_tasks == 24 and summary.responses_pending == 0 and summary.incomplete is None, summary.summary_json()
    lost, dup = dataset_lost_and_duplicated(out, summary)
    assert (lost, dup) == (0, 0)
    FAULTS.append({"fault": "401 from request 9 on, then key fixed", "injected": sent_while_revoked,
                   "outcome": "breaker stop (exit 3), resume completes", "lost": lost, "duplicated": dup})


def test_400_for_every_request_stops_without_progress(ray_cluster, tmp_path):
    from medforge.generate.pipeline import run_generate

    out = tmp_path / "run400"
    with StubOpenAI(fault=lambda n, body: (400, {})) as stub:
        with pytest.raises(Exception) as info:
            run_generate(_gen_cfg(stub.url, out))
        assert re.search(r"400 bad request.*structured_output", circuit_message(info.value) or "")
        sent = len(stub.log)
    assert not list((out / "raw").glob("round_*.jsonl"))  # a failed round never counts as a round
    from medforge.generate.pipeline import MAX_FAILED_ROUNDS

    assert sent <= MAX_FAILED_ROUNDS * (6 + 4)
    FAULTS.append({"fault": "400 for every request", "injected": sent, "outcome": "breaker stop (exit 3), 0 rounds counted",
                   "lost": 0, "duplicated": 0})


def test_retries_exhausted_leave_responses_pending_then_done(ray_cluster, tmp_path):
    from medforge.generate.pipeline import run_generate

    healthy = threading.Event()
    doomed = set()

    def fault(n, body):
        # every attempt at answering the first 3 distinct response requests fails with 503 until the endpoint recovers
        if "tasks" in json.dumps(body.get("response_format") or {}):
            return None  # task generation is healthy
        text = json.dumps(body["messages"], sort_keys=True)
        if not healthy.is_set() and (text in doomed or len(doomed) < 3):
            doomed.add(text)
            return (503, {})
        return None

    out = tmp_path / "runretry"
    with StubOpenAI(fault=fault) as stub:
        first = run_generate(_gen_cfg(stub.url, out))
        assert first.responses_pending == len(doomed) > 0 and first.incomplete
        assert not read_jsonl(out / "quarantine" / "responses_failed.jsonl")  # pending, not quarantined
        injected = sum(1 for _, _, code in stub.log if code == 503)
        healthy.set()
        summary = run_generate(_gen_cfg(stub.url, out))
    assert summary.responses_pending == 0 and summary.dataset_rows == summary.accepted_tasks
    lost, dup = dataset_lost_and_duplicated(out, summary)
    assert (lost, dup) == (0, 0)
    FAULTS.append({"fault": "503 on every attempt for some responses (retries exhausted)", "injected": injected,
                   "outcome": f"{len(doomed)} rows pending (exit 3), resume answers them", "lost": lost, "duplicated": dup})


def test_retry_after_is_honoured(ray_cluster, tmp_path):
    from medforge.generate.pipeline import run_generate

    def fault(n, body):
        return (429, {"Retry-After": "1"}) if n in (1, 2) else None

    out = tmp_path / "runra"
    with StubOpenAI(fault=fault) as stub:
        summary = run_generate(_gen_cfg(stub.url, out, **{"budget.target_tasks": 4, "budget.max_rounds": 2}))
        log = sorted(stub.log)
    assert summary.accepted_tasks == 4
    bodies = [json.dumps(b, sort_keys=True) for b in stub.bodies]
    times = {n: t for t, n, _ in log}
    for n in (1, 2):  # the retry of the same request body came after the server's 1 s, not our ~10 ms backoff
        retry = next(m for m in range(n + 1, len(bodies) + 1) if bodies[m - 1] == bodies[n - 1])
        assert times[retry] - times[n] >= 0.9
    FAULTS.append({"fault": "429 with Retry-After: 1 (twice)", "injected": 2, "outcome": "retried after >= 1 s, done",
                   "lost": 0, "duplicated": 0})


def test_lasting_outage_on_contexts_stops_then_resumes_exactly_once(ray_cluster, tmp_path):
    from contexts_loopback import canned_reply

    from medforge.contexts.config import ContextsConfig
    from medforge.contexts.pipeline import run_contexts

    vignettes = [json.loads(x) for x in (Path(__file__).parents[1] / "data" / "phi_vignettes.jsonl").read_text().splitlines()]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({**v, "id": f"{v['id']}-{c}"}) + "\n" for c in range(3) for v in vignettes))
    down = threading.Event()
    down.set()

    def cfg(url):
        return ContextsConfig.model_validate({
            "engine": {"kind": "openai", "base_url": url, "model": "loopback", "concurrency": 1, "check_endpoint": False,
                        "max_concurrent_requests": 4, "batch_size": 4, "max_retries": 1, "backoff_base_s": 0.01,
                        "backoff_max_s": 0.02, "breaker": {"max_consecutive_failures": 10}},
            "input": {"path": str(inp)}, "keyword_concurrency": [1, 1],
            "generation": {"sampling": {"temperature": 0.0, "max_tokens": 300}},
            "output": {"dir": str(tmp_path / "ctx"), "chunk_rows": 9, "format": "jsonl"}})

    with StubOpenAI(fault=lambda n, body: (503, {}) if down.is_set() else None,
                    responder=lambda body: canned_reply(body["messages"])) as stub:
        with pytest.raises(Exception) as info:
            run_contexts(cfg(stub.url))
        assert re.search(r"in a row failed.*endpoint unavailable|endpoint is down", circuit_message(info.value) or "")
        injected = sum(1 for _, _, code in stub.log if code == 503)
        assert not list((tmp_path / "ctx" / "out").glob("part-*"))  # an all-failed chunk is never marked done
        down.clear()
        summary = run_contexts(cfg(stub.url))
    ids = Counter(r["id"] for p in sorted((tmp_path / "ctx" / "out").glob("part-*.jsonl")) for r in read_jsonl(p))
    quarantined = Counter(r["id"] for p in sorted((tmp_path / "ctx" / "quarantine").glob("part-*.jsonl"))
                          for r in read_jsonl(p))
    assert summary.chunks_pending == 0 and summary.incomplete is None
    lost = 27 - len(ids) - len(quarantined)
    dup = sum(n - 1 for n in (ids + quarantined).values() if n > 1)
    assert (lost, dup) == (0, 0) and len(ids) == 27
    FAULTS.append({"fault": "lasting outage (503 on every attempt), contexts job", "injected": injected,
                   "outcome": "breaker stop (exit 3), 0 chunks marked done; resume completes", "lost": lost,
                   "duplicated": dup})
