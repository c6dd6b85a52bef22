"""Shared storage on a real S3 API (moto server on loopback): the write probe, fine-tuning's preflight
refusing a missing bucket, and the run folders of generate, contexts and evaluate on s3://.

Fine-tuning with its checkpoints and export on s3:// (ZeRO-2 packed LoRA; a resubmitted run resumes
from the bucket; the LoRA merge in the exported model) is test_finetune_node_loss.py, whose run
also loses a node mid-run and restores from the bucket.
"""

from __future__ import annotations

import json
import time

import pytest

from medforge.config.base import ConfigError
from medforge.io import atomic_write_jsonl, storage_filesystem, storage_write_problem
from medforge.finetune.synthetic import instruction_rows
from trainutils import llm_cfg

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ray_s3(s3_env):
    """A local Ray whose every worker (Ray Train's included) sees the S3 endpoint."""
    import ray

    if ray.is_initialized():  # another module's cluster: its workers would not see the endpoint
        ray.shutdown()
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": s3_env})
    yield
    ray.shutdown()


def test_storage_probe_on_s3(s3_env):
    assert storage_write_problem("s3://medforge-test/runs/x", "checkpoint.storage_path") is None
    t0 = time.perf_counter()
    problem = storage_write_problem("s3://no-such-bucket/ckpt", "checkpoint.storage_path")
    elapsed = time.perf_counter() - t0
    assert problem and "checkpoint.storage_path = 's3://no-such-bucket/ckpt': cannot be written" in problem
    assert "no-such-bucket" in problem and "fix:" in problem
    assert elapsed < 30  # a refusal, not a hang (loose: the point is that it returns)
    fs, path = storage_filesystem("s3://medforge-test/runs/x")
    from pyarrow.fs import FileSelector

    left = fs.get_file_info(FileSelector(path, recursive=True))
    assert not [f for f in left if ".medforge-write-probe" in f.path]  # the probe cleaned up after itself


def test_finetune_preflight_refuses_missing_bucket(tmp_path, tiny_models, ray_s3):
    from medforge.finetune.llm import run_finetune

    data = tmp_path / "sft.jsonl"
    atomic_write_jsonl(data, instruction_rows(8, seed=0, median_words=8))
    cfg = llm_cfg(tmp_path, tiny_models["llama"], data, **{"checkpoint.storage_path": "s3://no-such-bucket/ckpt"})
    with pytest.raises(ConfigError, match="checkpoint.storage_path = 's3://no-such-bucket/ckpt': cannot be written"):
        run_finetune(cfg)


# ----------------------------------------------------------------------------- generation run folders on s3://
def _s3_files(uri: str) -> dict[str, bytes]:
    from pyarrow.fs import FileSelector, FileType

    fs, root = storage_filesystem(uri)
    out = {}
    for info in fs.get_file_info(FileSelector(root, recursive=True, allow_not_found=True)):
        if info.type == FileType.File:
            with fs.open_input_stream(info.path) as f:
                out[info.path[len(root) + 1:]] = f.read()
    return out


def _jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def test_instruction_run_folder_on_s3_resumes_on_another_driver(tmp_path, ray_s3):
    """The run lives in the bucket: a second driver with an empty staging copy resumes it from there."""
    import shutil

    from jobutils import api_teacher_config
    from openai_stub import StubOpenAI

    from medforge.generate.pipeline import run_generate

    uri = "s3://medforge-test/runs/gen"
    with StubOpenAI() as stub:
        with pytest.raises(ConfigError, match="output.dir = 's3://no-such-bucket/gen': cannot be written"):
            run_generate(api_teacher_config(stub.url, "s3://no-such-bucket/gen", tmp_path / "x"))
        assert not stub.bodies  # refused before any request
        first = run_generate(api_teacher_config(
            stub.url, uri, tmp_path / "a", **{"budget.max_rounds": 1, "output.staging_dir": tmp_path / "stage_a"}))
        n_first = len(stub.bodies)
        remote = _s3_files(uri)
        assert first.paths.jsonl == f"{uri}/dataset/medinstruct.jsonl"
        assert {"run.json", "summary.json", "dataset/medinstruct.jsonl"} <= set(remote)
        rounds = sorted(k for k in remote if k.startswith("raw/round_"))
        assert len(rounds) == first.rounds == 1
        rows_a = _jsonl(remote["dataset/medinstruct.jsonl"])
        assert 0 < len(rows_a) == first.accepted_tasks
        shutil.rmtree(tmp_path / "stage_a")  # the first driver and its disk are gone

        second = run_generate(api_teacher_config(
            stub.url, uri, tmp_path / "b", **{"budget.target_tasks": 60, "output.staging_dir": tmp_path / "stage_b"}))
        new_bodies = stub.bodies[n_first:]
    rows_b = _jsonl(_s3_files(uri)["dataset/medinstruct.jsonl"])
    assert len(rows_b) == 60 and second.rounds > first.rounds
    # the first run's tasks and answers came from the bucket: same rows, and no request asked for them again
    # (the stub numbers its answers, so a re-asked response would differ)
    assert rows_b[:len(rows_a)] == rows_a
    def is_gen(body):
        return "tasks" in json.dumps(body.get("response_format", {}))

    round0 = [b["messages"] for b in stub.bodies[:n_first] if is_gen(b)]
    gen_requests = [b for b in new_bodies if is_gen(b)]
    assert round0 and gen_requests and not [b for b in gen_requests if b["messages"] in round0]  # round 0 not re-asked
    assert _s3_files(uri)[rounds[0]] == remote[rounds[0]]
    assert len(new_bodies) - len(gen_requests) == 60 - len(rows_a)  # responses for the new tasks only


def test_context_run_folder_on_s3_workers_read_the_bucket_and_resume_redoes_only_the_lost_chunk(
        tmp_path, ray_s3, monkeypatch):
    import shutil
    from pathlib import Path

    from contexts_loopback import LoopbackServer

    from medforge.contexts import pipeline
    from medforge.contexts.config import ContextsConfig

    vignettes = Path(__file__).parents[1] / "data" / "phi_vignettes.jsonl"
    rows = [json.loads(x) for x in vignettes.read_text().splitlines() if x.strip()]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({**r, "id": f"{r['id']}-{c}"}) + "\n" for c in range(2) for r in rows))
    n_rows = 2 * len(rows)
    uri = "s3://medforge-test/runs/ctx"
    worker_paths: list[str] = []
    real_build = pipeline.build_dataset
    monkeypatch.setattr(pipeline, "build_dataset", lambda cfg, paths: worker_paths.extend(paths) or real_build(cfg, paths))

    def cfg(url, staging):
        return ContextsConfig.model_validate({
            "engine": {"kind": "openai", "base_url": url, "model": "loopback", "concurrency": 1,
                        "max_concurrent_requests": 4, "batch_size": 6, "max_retries": 2, "backoff_base_s": 0.05},
            "input": {"path": str(inp)}, "keyword_concurrency": [1, 1],
            "generation": {"sampling": {"temperature": 0.0, "max_tokens": 300}},
            "output": {"dir": uri, "chunk_rows": 6, "format": "jsonl", "staging_dir": str(staging)}})

    with LoopbackServer() as srv:
        first = pipeline.run_contexts(cfg(srv.base_url, tmp_path / "stage_a"))
        n_first = len(srv.rec.requests)
        chunks = first.chunks
        assert chunks >= 3 and first.rows_with_context + first.rows_quarantined == n_rows
        # every staged chunk reached the keyword actors as an object in the bucket, not a driver path
        assert sorted(worker_paths) == [f"{uri}/staged/chunk_{c:05d}.parquet" for c in range(chunks)]
        before = _s3_files(uri)
        assert {f"out/part-{c:05d}.jsonl" for c in range(chunks)} <= set(before)
        # the job died after chunk 1 was generated but before its shard reached the bucket; the driver is gone
        fs, root = storage_filesystem(f"{uri}/out/part-00001.jsonl")
        fs.delete_file(root)
        shutil.rmtree(tmp_path / "stage_a")
        worker_paths.clear()

        second = pipeline.run_contexts(cfg(srv.base_url, tmp_path / "stage_b"))
        redone = srv.rec.requests[n_first:]
    assert second.chunks_this_run == 1 and worker_paths == [f"{uri}/staged/chunk_00001.parquet"]
    assert len(redone) == 6  # chunk 1's rows, nothing else
    after = _s3_files(uri)
    for c in range(chunks):
        name = f"out/part-{c:05d}.jsonl"
        if c != 1:
            assert after[name] == before[name]  # untouched
    ids = [r["id"] for c in range(chunks) for r in _jsonl(after[f"out/part-{c:05d}.jsonl"])]
    assert len(ids) == len(set(ids)) == second.rows_with_context
    assert _jsonl(after["out/part-00001.jsonl"]) == _jsonl(before["out/part-00001.jsonl"])


def test_eval_run_folder_on_s3_second_driver_makes_no_call(tmp_path, ray_s3):
    """The report and the call cache live in the bucket: a rerun elsewhere pays for no call."""
    import shutil

    from openai_stub import StubOpenAI
    from test_evaluate import EXPECTED_WIN_RATE, _write_config, responder

    from medforge.config.base import load_config
    from medforge.evaluate.config import EvaluateConfig
    from medforge.evaluate.freeform import run_evaluate

    uri = "s3://medforge-test/runs/eval"
    with StubOpenAI(responder=responder) as stub:
        first = run_evaluate(load_config(EvaluateConfig, _write_config(tmp_path, stub.url, uri, staging_dir=str(tmp_path / "a"))))
        calls = len(stub.bodies)
        assert calls == 16 and first.judge_calls.made == 10
        shutil.rmtree(tmp_path / "a")
        second = run_evaluate(load_config(EvaluateConfig, _write_config(tmp_path, stub.url, uri, staging_dir=str(tmp_path / "b"))))
        assert len(stub.bodies) == calls  # answers and verdicts came from the cache in the bucket
    assert second.judge_calls.model_dump() == {"requested": 10, "cached": 10, "made": 0, "errors": 0}
    stored = _s3_files(uri)
    assert {"report.json", "report.html", "verdicts.jsonl", "cache/answers.jsonl", "cache/verdicts.jsonl"} <= set(stored)
    assert json.loads(stored["report.json"])["references"]["reference"]["win_rate"] == pytest.approx(EXPECTED_WIN_RATE)
