"""A Ray cluster of separate nodes on one machine, each started as a user's node is: its own
``ray start`` process, from the nodes' environment (:mod:`nodeenv`, built from
deploy/requirements-cluster.txt, no medforge), with its own temp and working folders, token
authentication on and the dashboard on loopback. The only disk the nodes share is the declared
shared folder (``MEDFORGE_SHARED_MOUNTS``, as ``/mnt/shared`` is on a real cluster).

Used by tests/integration/test_rehearsal.py (``make rehearse``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from jobutils import REPO, free_port, proc_table
from nodeenv import NodeEnv

CLIENT_RAY = str(Path(sys.executable).parent / "ray")     # the user's laptop: the project's venv
CLIENT_SERVE = str(Path(sys.executable).parent / "serve")


@dataclass
class Node:
    name: str
    proc: subprocess.Popen
    temp: Path
    work: Path
    log: Path


@dataclass
class RehearsalCluster:
    root: Path            # short: Ray's socket paths have a length limit
    env: NodeEnv
    shared: Path
    num_cpus: int = 4
    workers: int = 2
    worker_resources: dict[str, float] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    token_file: Path | None = None
    gcs_port: int = 0
    dashboard_port: int = 0

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def node_env(self) -> dict[str, str]:
        """What a node's start command holds: its own interpreter first on PATH, token auth, the
        shared mount declared, no hub. Nothing of the test's own venv or import path."""
        env = {k: v for k, v in os.environ.items()
               if k not in {"VIRTUAL_ENV", "PYTHONPATH", "RAY_ADDRESS", "PYTHONHOME"} and not k.startswith("PYTEST")}
        env.update({"PATH": f"{self.env.bin}{os.pathsep}{os.environ.get('PATH', '')}", "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN_PATH": str(self.token_file), "MEDFORGE_SHARED_MOUNTS": str(self.shared),
                    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                    # a loaded 2-core machine can take longer than Ray's default to register a raylet
                    "RAY_raylet_start_wait_time_s": "180"})
        return env

    def client_env(self) -> dict[str, str]:
        """The user's shell: the project's venv on PATH, token auth with the cluster's token."""
        env = {k: v for k, v in os.environ.items() if k not in {"RAY_ADDRESS"}}
        env.update({"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_file), "PYTHONUNBUFFERED": "1"})
        return env

    def _start(self, name: str, args: list[str]) -> Node:
        temp, work = self.root / name, self.root / f"{name}_work"
        work.mkdir(parents=True, exist_ok=True)
        log = self.root / f"{name}.log"
        ports = [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                 f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}"]
        with open(log, "w") as f:
            # every node on loopback: the nodes of this "cluster" are processes of one machine
            proc = subprocess.Popen([str(self.env.bin / "ray"), "start", "--block", *args, *ports,
                                     "--node-ip-address=127.0.0.1",
                                     f"--num-cpus={self.num_cpus}", f"--temp-dir={temp}", "--disable-usage-stats"],
                                    env=self.node_env(), cwd=work, stdout=f, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        node = Node(name, proc, temp, work, log)
        self.nodes.append(node)
        return node

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.shared.mkdir(parents=True, exist_ok=True)
        self.token_file = self.root / "auth_token"
        self.token_file.write_text(secrets.token_hex(32))
        self.token_file.chmod(0o600)
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        self._start("head", ["--head", f"--port={self.gcs_port}", "--dashboard-host=127.0.0.1",
                             f"--dashboard-port={self.dashboard_port}", f"--ray-client-server-port={free_port()}",
                             "--include-dashboard=true"])
        self.wait_nodes(1)
        for i in range(self.workers):
            res = ["--resources", json.dumps(self.worker_resources)] if self.worker_resources else []
            self._start(f"worker{i + 1}", [f"--address=127.0.0.1:{self.gcs_port}", *res])
        self.wait_nodes(1 + self.workers)
        self.wait_job_server()

    def ray_cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([CLIENT_RAY, *args], env=self.client_env(), cwd=REPO, capture_output=True,
                              text=True, timeout=timeout)

    def alive_nodes(self) -> list[dict]:
        proc = self.ray_cli("list", "nodes", "--address", self.address, "--format", "json", "--limit", "50")
        if proc.returncode != 0:
            return []
        try:
            return [n for n in json.loads(proc.stdout) if n.get("state") == "ALIVE"]
        except json.JSONDecodeError:
            return []

    def wait_nodes(self, n: int, timeout: float = 240) -> None:
        deadline = time.time() + timeout
        while len(self.alive_nodes()) < n:
            for node in self.nodes:
                assert node.proc.poll() is None, f"{node.name} exited:\n{node.log.read_text()[-3000:]}"
            assert time.time() < deadline, f"fewer than {n} nodes alive after {timeout} s"
            time.sleep(2)

    def wait_job_server(self, timeout: float = 240) -> None:
        deadline = time.time() + timeout
        while self.ray_cli("job", "list", "--address", self.address).returncode != 0:
            assert time.time() < deadline, "the job server never answered"
            time.sleep(2)

    def stop(self) -> None:
        """SIGTERM each node's process group (``ray start --block`` stops what it started), then
        SIGKILL whatever still runs with this cluster's folders in its command line. Never
        ``ray stop``: it would end every Ray on the machine."""
        for node in reversed(self.nodes):
            try:
                os.killpg(node.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + 30
        for node in self.nodes:
            try:
                node.proc.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(node.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        mine = str(self.root)
        for pid, _, _, cmd in proc_table():
            if mine in cmd and pid != os.getpid():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
