"""The same job on the API teacher: a stub OpenAI server on loopback stands in for a paid API."""

from __future__ import annotations

import json
import socket

import pytest

from jobutils import api_teacher_config, read_jsonl
from openai_stub import StubOpenAI


@pytest.fixture(scope="module")
def ray_cluster(shared_ray):
    """The session's shared local Ray (tests/integration/conftest.py)."""
    yield


def _cfg(url, out, **extra):
    return api_teacher_config(url, out, out, **extra)


def test_api_teacher_with_injected_failures(ray_cluster, tmp_path):
    from medforge.generate.pipeline import run_generate

    with StubOpenAI(fail_every=7) as stub:
        summary = run_generate(_cfg(stub.url, tmp_path / "run"))
    rows = read_jsonl(tmp_path / "run" / "dataset" / "medinstruct.jsonl")
    assert summary.accepted_tasks == 40 and len(rows) == 40
    assert all(r["output"].startswith("Stub answer") for r in rows)
    assert all(r["provenance"]["teacher_engine"] == "openai" for r in rows)
    # structured output was requested, and the 429/500s were retried rather than lost
    gen = [b for b in stub.bodies if "tasks" in json.dumps(b.get("response_format", {}))]
    assert gen and all(b["response_format"]["type"] == "json_schema" for b in gen)
    assert all(b["temperature"] == 1.0 and b["presence_penalty"] == 1.5 for b in stub.bodies)
    assert summary.rejected.get("engine_error", 0) == 0


def test_endpoint_down_is_a_clear_error(ray_cluster, tmp_path):
    from medforge.generate.pipeline import run_generate

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError, match=r"unreachable.*start the server, or fix engine.base_url"):
        run_generate(_cfg(f"http://127.0.0.1:{port}/v1", tmp_path / "down"))


# ----------------------------------------------------------------------------- reply gates
GOOD_ANSWER = ("Start with the airway, breathing and circulation. Give oxygen if saturation is below 94 percent, "
               "take blood cultures and lactate, and start broad-spectrum antibiotics within one hour. Give 30 ml/kg "
               "of crystalloid for hypotension, then reassess the heart rate, blood pressure and urine output.")
DEFECTS = ("good", "loop", "refusal", "empty", "echo", "french", "truncated", "flaky")
GATE_OF = {"loop": "repetition", "refusal": "refusal", "empty": "empty", "echo": "echo", "french": "not_english",
           "truncated": "truncated"}


def test_reply_gates_quarantine_each_defect_and_keep_every_good_reply(ray_cluster, tmp_path, capsys):
    """A loopback teacher answers tasks with each defect: each is quarantined with its gate after one retry,
    every good reply is kept, a flaky one (a loop, then a good answer) is kept on its retry, and the card is written."""
    import threading
    from collections import Counter

    from medforge.generate.pipeline import run_generate

    asked: Counter[str] = Counter()
    kind_of: dict[str, str] = {}  # each task's defect, in turn as tasks are first asked: every kind occurs
    lock = threading.Lock()

    def _defect(instruction: str) -> str:
        return kind_of[instruction]

    def responder(body):
        schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema") or {}
        if "tasks" in schema.get("properties", {}):
            return None  # task generation: the stub's own tasks
        instruction = body["messages"][-1]["content"]
        with lock:
            asked[instruction] += 1
            n = asked[instruction]
            kind_of.setdefault(instruction, DEFECTS[len(kind_of) % len(DEFECTS)])
        kind = _defect(instruction)
        if kind == "flaky":
            kind = "loop" if n == 1 else "good"
        return {"good": GOOD_ANSWER, "loop": "Drink water. " + "This is a medical advice. " * 30,
                "refusal": "As an AI language model, I cannot provide medical advice.", "empty": "  ",
                "echo": instruction, "french": "Le patient doit boire de l'eau et il est important de consulter un "
                "médecin pour les symptômes qui sont graves dans la plupart des cas.",
                "truncated": (GOOD_ANSWER, "length")}[kind]

    with StubOpenAI(responder=responder) as stub:
        summary = run_generate(_cfg(stub.url, tmp_path / "run", **{"responses.checks.enabled": "true"}))
    run = tmp_path / "run"
    rows = read_jsonl(run / "dataset" / "medinstruct.jsonl")
    failed = read_jsonl(run / "quarantine" / "responses_failed.jsonl")
    kinds = Counter(_defect(r["instruction"]) for r in rows)
    assert set(kinds) <= {"good", "flaky"}, kinds
    assert all(r["output"] == GOOD_ANSWER and r["response_truncated"] is False for r in rows)
    accepted_kinds = Counter(_defect(t["instruction"]) for t in [*rows, *(f["task"] for f in failed)])
    assert len(rows) == accepted_kinds["good"] + accepted_kinds["flaky"] > 0  # every good reply kept
    assert summary.accepted_tasks == len(rows) + len(failed) == 40
    for f in failed:
        kind = _defect(f["task"]["instruction"])
        assert f["gate"] == GATE_OF[kind], (kind, f)
        assert f["attempts"] == 2 and f["reason"].startswith(GATE_OF[kind])
    assert {f["gate"] for f in failed} == set(GATE_OF.values()), accepted_kinds  # every defect occurred (5 of each)
    # each defect asked twice (one retry), each good task once, each flaky twice
    for instruction, n in asked.items():
        assert n == {"good": 1}.get(_defect(instruction), 2), (instruction, n)
    assert summary.responses_failed_by_reason == dict(Counter(f["gate"] for f in failed))
    assert summary.responses_retried == len(failed) + accepted_kinds["flaky"]
    # the card, with its plots, and the progress line on stdout
    md = (run / "card.md").read_text()
    assert md.startswith("---\n") and "## Rejections" in md and "not_english" in md and "stub-teacher" in md
    assert (run / "card.html").is_file() and len(list((run / "card_plots").glob("*.png"))) >= 6
    assert summary.paths.card.endswith("card.md")
    out = capsys.readouterr().out
    assert "[progress] round" in out and "accepted" in out and "ETA" in out and "[progress] responses:" in out
