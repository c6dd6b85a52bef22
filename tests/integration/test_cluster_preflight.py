"""Preflight against what the cluster can grow to, through the real job scripts and a real Ray.

The autoscaler config is the filled-in cluster.yaml, handed over as ``ray up`` leaves it on the
head (``MEDFORGE_AUTOSCALER_CONFIG`` names the file here; on a cluster it is
``~/ray_bootstrap_config.yaml``). No engine starts: the jobs must fail in seconds. They join the
session's shared Ray (``ray_address=``, as under ``ray job submit``) instead of each starting a
private cluster: on a loaded 2-core box a private start took over a minute, longer than the check.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jobutils import REPO, job_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def autoscaler_config(tmp_path_factory) -> Path:
    text = (REPO / "cluster.yaml").read_text()
    for placeholder, value in (("REPLACE-ME-ami", "ami-0123456789abcdef0"), ("REPLACE-ME-subnet", "subnet-0a"),
                               ("REPLACE-ME-account", "123456789012"), ("REPLACE-ME-efs-id", "fs-0a")):
        text = text.replace(placeholder, value)
    path = tmp_path_factory.mktemp("autoscaler") / "ray_bootstrap_config.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def ray_address(shared_ray) -> str:
    """The shared Ray's GCS address: the jobs join it as a driver and leave nothing behind when they exit."""
    import ray

    return ray.get_runtime_context().gcs_address


def _run(args: list[str], env_extra: dict[str, str], address: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**job_env(), **env_extra}
    return subprocess.run([sys.executable, *args, f"ray_address={address}"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, start_new_session=True)


@pytest.mark.parametrize("job,config", [
    ("ray_jobs/generate.py", "configs/generate/local_tiny.yaml"),
    ("ray_jobs/contexts.py", "configs/contexts/local_tiny.yaml"),
])
def test_generation_job_refuses_unknown_gpu_and_local_folder(job, config, autoscaler_config, tiny_models, ray_address,
                                                            tmp_path):
    out = tmp_path / "run"
    proc = _run([job, "--config", config, f"engine.model={tiny_models['llama']}", "engine.placement=gpu",
                 "engine.accelerator_type=B200", "engine.tensor_parallel_size=8", f"output.dir={out}"],
                {"MEDFORGE_AUTOSCALER_CONFIG": str(autoscaler_config)}, ray_address)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 2, log[-4000:]
    assert "joining Ray cluster at" in log  # the check ran against a live cluster, not before one
    assert "accelerator_type:B200 (no node type carries it)" in log
    assert "gen_l4" in log and "train_a100" in log  # the node types it can grow to are listed
    assert f"output.dir = '{out}': a local path, but the cluster has" in log  # both problems at once
    assert not out.exists()  # nothing written, no engine asked for
    assert "Initializing a V1 LLM engine" not in log


def test_generation_job_declared_l4_demand_passes_preflight_of_cluster_at_rest(autoscaler_config, tiny_models,
                                                                              ray_address, tmp_path):
    """No GPU is up (this machine has none), yet the L4 demand fits a node type: only the local folder is refused."""
    out = tmp_path / "run"
    proc = _run(["ray_jobs/generate.py", "--config", "configs/generate/local_tiny.yaml",
                 f"engine.model={tiny_models['llama']}", "engine.placement=gpu", "engine.accelerator_type=L4",
                 "engine.tensor_parallel_size=8", "engine.concurrency=[1,4]", f"output.dir={out}"],
                {"MEDFORGE_AUTOSCALER_CONFIG": str(autoscaler_config)}, ray_address)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 2, log[-4000:]
    assert "1 problem(s)" in log and "a local path, but the cluster has" in log


def test_finetune_preflight_against_autoscaler_vs_live_nodes(shared_ray, autoscaler_config, monkeypatch):
    """An 8 x A100 job on a cluster at rest passes (the autoscaler can launch train_a100); the same job
    checked against the nodes up now (no autoscaler) is refused, naming the GPU."""
    from medforge.finetune.common import cluster_capacity_problems
    from medforge.finetune.config import ScalingSection

    scaling = ScalingSection(num_workers=8, use_gpu=True, accelerator_type="A100", cpus_per_worker=8,
                             memory_gib_per_worker=100)
    storage = {"checkpoint.storage_path": "/mnt/shared/ckpt"}
    monkeypatch.setenv("MEDFORGE_AUTOSCALER_CONFIG", str(autoscaler_config))
    assert cluster_capacity_problems(scaling, storage) == []
    too_big = scaling.model_copy(update={"num_workers": 17})
    problems = cluster_capacity_problems(too_big, storage)
    assert len(problems) == 1 and "17 replica(s) need 17 x" in problems[0] and "train_a100: 8 per node by GPU x max 2" in problems[0]
    monkeypatch.delenv("MEDFORGE_AUTOSCALER_CONFIG")
    problems = cluster_capacity_problems(scaling, storage)
    assert problems and "GPU >= 1 (largest offered: 0)" in problems[0] and "the nodes up now" in problems[0]
