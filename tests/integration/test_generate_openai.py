"""The same job on the API teacher: a stub OpenAI server on loopback stands in for a paid API."""

from __future__ import annotations

import json
import socket

import pytest

from jobutils import api_teacher_config, read_jsonl
from openai_stub import StubOpenAI


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(address="local", num_cpus=4, include_dashboard=False)
    yield
    ray.shutdown()


def _cfg(url, out, **extra):
    return api_teacher_config(url, out, out, **extra)


def test_api_teacher_with_injected_failures(ray_cluster, tmp_path):
    from medforge.datagen.pipeline import run_instruction_synthesis

    with StubOpenAI(fail_every=7) as stub:
        summary = run_instruction_synthesis(_cfg(stub.url, tmp_path / "run"))
    rows = read_jsonl(tmp_path / "run" / "dataset" / "medinstruct.jsonl")
    assert summary["accepted_tasks"] == 40 and len(rows) == 40
    assert all(r["output"].startswith("Stub answer") for r in rows)
    assert all(r["provenance"]["teacher_engine"] == "openai" for r in rows)
    # structured output was requested, and the 429/500s were retried rather than lost
    gen = [b for b in stub.bodies if "tasks" in json.dumps(b.get("response_format", {}))]
    assert gen and all(b["response_format"]["type"] == "json_schema" for b in gen)
    assert all(b["temperature"] == 1.0 and b["presence_penalty"] == 1.5 for b in stub.bodies)
    assert summary["rejected"].get("engine_error", 0) == 0


def test_endpoint_down_is_a_clear_error(ray_cluster, tmp_path):
    from medforge.datagen.pipeline import run_instruction_synthesis

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError, match=r"unreachable.*start the server, or fix teacher.base_url"):
        run_instruction_synthesis(_cfg(f"http://127.0.0.1:{port}/v1", tmp_path / "down"))
