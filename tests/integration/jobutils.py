"""Helpers for running job entry scripts as real subprocesses in integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any
from collections import Counter
from pathlib import Path

import medforge.io

REPO = Path(__file__).resolve().parents[2]
JOB = REPO / "ray_jobs" / "generate.py"
TINY_CONFIG = REPO / "configs" / "generate" / "local_tiny.yaml"


def job_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.pop("RAY_ADDRESS", None)
    return env


def run_job(args: list[str], log: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a job entry script as a real subprocess (its own local Ray cluster)."""
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, *args], cwd=REPO, env=job_env(), stdout=f, stderr=subprocess.STDOUT,
                              timeout=timeout, start_new_session=True)
    if proc.returncode != 0:
        raise AssertionError(f"job failed ({proc.returncode}); log tail:\n" + log.read_text()[-6000:])
    return proc


def start_job(args: list[str], log: Path) -> subprocess.Popen:
    f = open(log, "w")  # noqa: SIM115 - closed when the process is reaped
    return subprocess.Popen([sys.executable, *args], cwd=REPO, env=job_env(), stdout=f, stderr=subprocess.STDOUT,
                            start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the job and everything it started (its local Ray cluster, engine processes)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)
    time.sleep(2)


def wait_for(path_glob: tuple[Path, str], proc: subprocess.Popen, timeout: float = 600) -> None:
    folder, pattern = path_glob
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list(folder.glob(pattern)):
            return
        if proc.poll() is not None:
            raise AssertionError(f"job exited ({proc.returncode}) before {folder}/{pattern} appeared")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {folder}/{pattern}")


def read_jsonl(path: Path) -> list[dict]:
    return list(medforge.io.read_jsonl(path))


def wait_for_text(log: Path, text: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    """Wait until ``text`` appears in the job's log."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise AssertionError(f"job exited ({proc.returncode}) before {text!r} was logged")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {text!r} in {log}")


def api_teacher_config(url: str, out: str | Path, workdir: Path, **extra):
    """The tiny generation config with an OpenAI-compatible teacher at ``url``, writing to ``out``
    (a path or a URI); ``extra`` are dotted overrides (teacher keys included: they come last).
    The config file is written into ``workdir``."""
    import yaml

    from medforge.config.base import load_config
    from medforge.generate.config import GenerateConfig

    overrides = ["engine.kind=openai", f"engine.base_url={url}", "engine.model=stub-teacher",
                 "engine.backoff_base_s=0.01", "engine.max_retries=4"]
    ov = {"engine": None, "output.dir": out, "budget.target_tasks": 40, "budget.max_rounds": 10,
          "responses.chunk_size": 16, **extra}
    overrides += [f"{k}={v}" for k, v in ov.items() if v is not None]
    # the local_tiny YAML carries vLLM-only keys; start from its other sections
    data = yaml.safe_load(TINY_CONFIG.read_text())
    data["engine"] = {"kind": "openai", "base_url": url, "model": "x"}
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(GenerateConfig, path, overrides)


def dataset_lost_and_duplicated(root: Path, summary: Any) -> tuple[int, int]:
    """(rows lost, rows duplicated) of a finished instruction run, from its files."""
    rows = read_jsonl(root / "dataset" / "medinstruct.jsonl")
    ids = Counter(r["id"] for r in rows)
    answered = Counter(r["task_id"] for p in sorted((root / "responses").glob("part_*.jsonl")) for r in read_jsonl(p))
    failed = read_jsonl(root / "quarantine" / "responses_failed.jsonl")
    lost = summary.accepted_tasks - len(rows) - len(failed)
    dup = sum(n - 1 for n in ids.values() if n > 1) + sum(n - 1 for n in answered.values() if n > 1)
    return lost, dup


def proc_table() -> list[tuple[int, int, int, str]]:
    """``(pid, ppid, session id, command line)`` of every process this user can see, from /proc."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()  # fields from 3 on: state, ppid, pgrp, session
            cmd = (d / "cmdline").read_bytes().decode(errors="replace")
            out.append((int(d.name), int(stat[1]), int(stat[3]), cmd))
        except (OSError, IndexError, ValueError):
            continue
    return out


def free_port() -> int:
    """A TCP port free on every interface of this machine now (a server or Ray started next binds it)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]
