"""The job through a real `ray start --head` + `ray job submit`, as a cluster user would run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobutils import REPO, free_port, job_env, read_jsonl
from openai_stub import StubOpenAI

RAY = str(Path(sys.executable).parent / "ray")



def _env() -> dict[str, str]:
    # Ray 2.60 clusters use token auth; the CLI client sends ~/.ray/auth_token only in token mode.
    # The job's `python` must be the cluster's Python (this venv), as on a real cluster image.
    env = job_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, "RAY_AUTH_MODE": "token"}


@pytest.fixture
def head_node(tmp_path):
    port, dash = free_port(), free_port()
    env = _env()
    temp = Path("/tmp") / f"ray_submit_{os.getpid()}"  # short: Ray's socket paths have a length limit
    # `ray start --block` in its own session: teardown signals that process group only. Never
    # `ray stop`: it kills every Ray process of this user on the machine -- other engineers'
    # clusters and other tests' local clusters included.
    log = open(tmp_path / "ray_start.log", "w")  # noqa: SIM115 - closed in teardown
    # Every port a node listens on is picked free: with Ray's fixed defaults (the dashboard
    # agent's 52365 among them) a second cluster on the machine -- a benchmark, another test --
    # leaves this head without a job agent, and every submission is refused.
    agent_ports = [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                   f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
                   f"--ray-client-server-port={free_port()}"]
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={port}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         *agent_ports, "--num-cpus=4", "--include-dashboard=true", f"--temp-dir={temp}", "--disable-usage-stats"],
        env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        # the job agent comes up a little after the head starts
        deadline = time.time() + 180
        while subprocess.run([RAY, "job", "list", "--address", address], env=env, capture_output=True,
                             timeout=60).returncode != 0:
            assert head.poll() is None, (tmp_path / "ray_start.log").read_text()[-3000:]
            assert time.time() < deadline, "Ray job server never became ready"
            time.sleep(2)
        yield address
    finally:
        _stop_group(head)
        log.close()


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the head's process group (``ray start --block`` then stops what it started), SIGKILL stragglers."""
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 30)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + grace
        while time.time() < deadline:
            try:
                os.killpg(proc.pid, 0)  # anything left in the group?
            except ProcessLookupError:
                proc.wait(timeout=5)
                return
            proc.poll()
            time.sleep(0.5)


def test_ray_job_submit(head_node, tmp_path):
    """The submission path (working-dir upload, the job joining the submitted-to cluster, its Ray
    Data actors there) with the loopback API teacher, so no engine start is paid here: the vLLM
    path of the same job is covered by test_generate_small.py."""
    out = tmp_path / "submitted"
    with StubOpenAI() as stub:
        cmd = [RAY, "job", "submit", "--address", head_node, "--working-dir", ".", "--",
               "python", "ray_jobs/generate.py", "--config", "configs/generate/openai_api.yaml",
               f"engine.base_url={stub.url}", "engine.model=stub-teacher", "engine.concurrency=1",
               "engine.backoff_base_s=0.01", f"output.dir={out}", "budget.target_tasks=10",
               "generation.requests_per_round=4", "responses.enabled=false"]
        # `ray job list` answers before the node's job agent is up; until it is, a submission is
        # refused with "No available agent" (nothing was submitted) -- on a loaded machine for
        # longer than the readiness loop above waits. Retry exactly that refusal, as Ray says to.
        deadline = time.time() + 180
        while True:
            proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
            log = proc.stdout + proc.stderr
            if proc.returncode == 0 or "No available agent" not in log or time.time() > deadline:
                break
            time.sleep(3)
        n_requests = len(stub.bodies)
    assert proc.returncode == 0, log[-6000:]
    assert "succeeded" in log.lower()
    assert "joining Ray cluster" in log  # it used the submitted-to cluster, not a new local one
    assert n_requests > 0  # the submitted job's actors reached the teacher
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accepted_tasks"] == 10
    assert len(read_jsonl(out / "dataset" / "medinstruct.jsonl")) == 10
