"""Shared storage on a real S3 API (moto server on loopback): probe, and fine-tuning checkpoints + resume on s3://."""

from __future__ import annotations

import json
import time

import pytest

from medforge.config.base import ConfigError
from medforge.io import atomic_write_jsonl, storage_filesystem, storage_write_problem
from medforge.train.synthetic import instruction_rows
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
    from medforge.train.llm import run_llm_finetune

    data = tmp_path / "sft.jsonl"
    atomic_write_jsonl(data, instruction_rows(8, seed=0, median_words=8))
    cfg = llm_cfg(tmp_path, tiny_models["llama"], data, **{"checkpoint.storage_path": "s3://no-such-bucket/ckpt"})
    with pytest.raises(ConfigError, match="checkpoint.storage_path = 's3://no-such-bucket/ckpt': cannot be written"):
        run_llm_finetune(cfg)


def test_finetune_checkpoints_on_s3_and_resume_there(tmp_path, tiny_models, ray_s3):
    """Checkpoints and the export on s3://; a second run with the same storage resumes from the bucket."""
    from medforge.train.llm import run_llm_finetune

    data = tmp_path / "sft.jsonl"
    atomic_write_jsonl(data, instruction_rows(32, seed=0, median_words=10))
    over = {"deepspeed.zero_stage": 2, "lora.enabled": True, "lora.r": 4, "lora.alpha": 8,
            "lora.target_modules": ["q_proj", "v_proj"], "optim.max_steps": 2, "optim.micro_batch_size": 2,
            "checkpoint.every_steps": 2, "data.eval_fraction": 0.0,
            "checkpoint.storage_path": "s3://medforge-test/ckpt"}
    first = run_llm_finetune(llm_cfg(tmp_path, tiny_models["llama"], data, **over))
    assert first["step"] == 2
    fs, root = storage_filesystem("s3://medforge-test/ckpt/sft")
    from pyarrow.fs import FileSelector

    stored = [f.path for f in fs.get_file_info(FileSelector(root, recursive=True))]
    assert any("checkpoint_" in p for p in stored), stored[:20]  # Ray Train wrote its checkpoint to the bucket
    assert not (tmp_path / "ckpt").exists()

    cfg2 = llm_cfg(tmp_path, tiny_models["llama"], data,
                   **{**over, "optim.max_steps": 4, "output.export_dir": "s3://medforge-test/export"})
    second = run_llm_finetune(cfg2)
    assert second["step"] == 4
    efs, epath = storage_filesystem("s3://medforge-test/export/training_logs/history.json")
    with efs.open_input_stream(epath) as f:
        hist = json.loads(f.read())
    assert [h["step"] for h in hist if "train_loss" in h] == [1, 2, 3, 4]  # 1-2 restored from S3, 3-4 new
    assert [h["step"] for h in hist if h.get("resumed_from_checkpoint")] == [2]
