"""An autoscaled burst and a node lost mid-run, on one machine, with Ray's own autoscaler.

The cluster is a head node plus Ray's fake multi-node provider
(``ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider``, the provider
behind ``ray.cluster_utils.AutoscalingCluster``) under autoscaler v2, as ``ray up`` and KubeRay
run it in Ray 2.60: a worker node type ``gen_node`` {CPU: 1, gen_pool: 1}, ``min_workers: 0``,
``max_workers: 4``, a 6 s idle timeout. ``gen_pool`` stands in for a GPU type
(``accelerator_type:L4`` on a real cluster). The autoscaler starts each node as a real raylet on
this machine, and stops it when it has been idle.

The generation job runs with the API teacher (a loopback OpenAI-compatible stub that takes
0.5 s per reply) at ``engine.concurrency: [1, 4]`` and ``engine.custom_resources: {gen_pool: 1}``:
every client actor needs a ``gen_node``, and there is none when the job starts.

* The burst: Ray Data's actor pool asks for actors as the backlog grows; they wait for
  ``gen_pool``; the autoscaler sees the pending actors and launches ``gen_node`` s; the job
  finishes with every row; after the idle timeout the nodes are gone again. The (time, worker
  nodes, client actors) series is sampled throughout; ``MEDFORGE_BURST_SERIES=path.json`` keeps
  it (``bench/plot_burst.py`` draws docs/img/autoscale_burst.svg from it).
* Node loss: the same job again; once a round is saved, the raylet of a node that hosts a
  client actor is SIGKILLed (with it, every worker process on the node). The job finishes
  in the same run, and its dataset equals the burst run's, row for row: nothing lost, nothing
  twice. The stub's replies are keyed by the request (``keyed=True``: messages and the
  per-request seed, which medforge derives from ``(seed, round, index)``), as a seeded teacher's
  are, so two runs of one config must give the same dataset however requests interleave.

Other modules start their own local Ray: the fixture shuts down any Ray this process has
joined first, and stops every process it started (the head's, and the worker nodes the
autoscaler launched) at the end. ``AutoscalingCluster`` itself is not used: its ``start()`` and
``shutdown()`` run ``ray stop --force``, which would kill every Ray cluster on the machine, and
it reads ``fake_multi_node/example.yaml``, which the Ray 2.60 wheel does not ship (the
``fake_multinode`` provider type fails on the same missing file; ``type: external`` with the
provider's module path loads the same class without it).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from jobutils import api_teacher_config, dataset_lost_and_duplicated, free_port, read_jsonl
from openai_stub import StubOpenAI

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POOL = "gen_pool"
NODE_TYPE = "gen_node"
MAX_WORKERS = 4
IDLE_TIMEOUT_MIN = 0.1  # 6 s: long enough to bridge the job's stages, short enough for a test
SERIES_ENV = "MEDFORGE_BURST_SERIES"
CLIENT_ACTOR = "_OpenAIChatUDF"  # in the class name of Ray Data's actor that holds the API client
FAKE_PROVIDER = "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider"


def autoscaler_config(gcs_address: str, head_node_id: str) -> dict:
    """A cluster-launcher config for Ray's fake multi-node provider, as ``ray up`` would hand it over."""
    return {
        "cluster_name": "medforge-burst",
        "max_workers": MAX_WORKERS,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": IDLE_TIMEOUT_MIN,
        "provider": {"type": "external", "module": FAKE_PROVIDER, "gcs_address": gcs_address,
                     "head_node_id": head_node_id, "launch_multiple": True},
        "auth": {"ssh_user": "ray"},
        "head_node_type": "ray.head.default",
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 2}, "node_config": {}, "max_workers": 0},
            NODE_TYPE: {"resources": {"CPU": 1, POOL: 1, "object_store_memory": 100 * 2**20}, "node_config": {},
                        "min_workers": 0, "max_workers": MAX_WORKERS},
        },
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }


class Sampler(threading.Thread):
    """Every 0.5 s: alive worker nodes, and alive API client actors (with their nodes), from the GCS."""

    def __init__(self, head_id: str):
        super().__init__(daemon=True)
        self.head_id = head_id
        self.t0 = time.monotonic()
        self.rows: list[dict] = []
        self.events: list[tuple[float, str]] = []
        self.pool_nodes: set[str] = set()  # every node that ever offered gen_pool
        self.other_nodes: set[str] = set()  # every other worker node (there should be none)
        self.actor_nodes: dict[str, str] = {}  # client actor id -> node id
        self.monitor_pid: int | None = None
        self.launched: dict[int, object] = {}  # pid -> psutil.Process: everything the autoscaler started
        self._halt = threading.Event()

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    def mark(self, what: str) -> None:
        self.events.append((self.now(), what))

    def sample(self) -> dict:
        import ray

        workers = [n for n in ray.nodes() if n["Alive"] and n["NodeID"] != self.head_id]
        for n in workers:
            (self.pool_nodes if n["Resources"].get(POOL) else self.other_nodes).add(n["NodeID"])
        actors = [(aid, a) for aid, a in ray._private.state.actors().items() if CLIENT_ACTOR in a["ActorClassName"]]
        alive = 0
        for aid, a in actors:
            if a["State"] == "ALIVE":
                alive += 1
                self.actor_nodes[aid] = a["Address"]["NodeID"]
        row = {"t": self.now(), "worker_nodes": len(workers), "client_actors": alive}
        self.rows.append(row)
        if self.monitor_pid is not None:
            # a node's agents outlive a killed raylet (re-parented to init): remember them while they are children
            for proc in _descendants(self.monitor_pid):
                self.launched.setdefault(proc.pid, proc)
        return row

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.sample()
            except Exception:  # noqa: BLE001 - a GCS hiccup while a node dies: skip this sample
                pass
            self._halt.wait(0.5)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)



def _descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.fixture(scope="module")
def autoscaling_cluster(tmp_path_factory):
    import ray
    from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # another module's local cluster
        ray.shutdown()
    port = free_port()
    gcs = f"{ray._private.services.get_node_ip_address()}:{port}"
    cfg_path = tmp_path_factory.mktemp("autoscaler") / "autoscaler.json"
    cfg_path.write_text(json.dumps(autoscaler_config(gcs, FAKE_HEAD_NODE_ID)))
    # What ray.cluster_utils.AutoscalingCluster(autoscaler_v2=True) sets: the fake provider's switch,
    # autoscaler v2 (as `ray up` uses in 2.60), a 1 s reconcile loop, and the head's fixed node id.
    env = {"RAY_FAKE_CLUSTER": "1", "RAY_enable_autoscaler_v2": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    head_only = {"RAY_CLOUD_INSTANCE_ID": FAKE_HEAD_NODE_ID, "RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID}
    with pytest.MonkeyPatch.context() as mp:
        # The preflight reads what the cluster can grow to from the autoscaler's config: Ray 2.60's v2
        # autoscaler does not report it to the GCS, so medforge reads the file, as on a `ray up` head
        # (~/ray_bootstrap_config.yaml).
        mp.setenv("MEDFORGE_AUTOSCALER_CONFIG", str(cfg_path))
        # Every node of this cluster shares this machine's disk: a tmp folder is a shared mount here.
        shared = tmp_path_factory.mktemp("autoscale_shared")
        mp.setenv("MEDFORGE_SHARED_MOUNTS", str(shared))
        for k, v in {**env, **head_only}.items():
            mp.setenv(k, v)
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 2, "gcs_server_port": port, "autoscaling_config": str(cfg_path), "include_dashboard": False,
            # the GCS declares a silent node dead after ~2 s, not Ray's default ~15 s (test time only)
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 4,
                               "health_check_timeout_ms": 500}})
        for k in head_only:
            mp.delenv(k)
        monitor_pid = cluster.head_node.all_processes["monitor"][0].process.pid
        sampler = Sampler(FAKE_HEAD_NODE_ID)
        sampler.monitor_pid = monitor_pid
        try:
            ray.init(address=cluster.address, log_to_driver=False)
            sampler.start()
            yield {"cluster": cluster, "sampler": sampler, "monitor_pid": monitor_pid, "shared": shared}
        finally:
            if sampler.is_alive():
                sampler.stop()
            if os.environ.get(SERIES_ENV):
                Path(os.environ[SERIES_ENV]).write_text(json.dumps(
                    {"node_type": NODE_TYPE, "max_workers": MAX_WORKERS, "idle_timeout_s": IDLE_TIMEOUT_MIN * 60,
                     "samples": sampler.rows, "events": sampler.events}, indent=1))
            ray.shutdown()
            launched = [*sampler.launched.values(), *_descendants(monitor_pid)]  # the worker nodes' processes
            cluster.shutdown()
            for proc in launched:  # psutil checks the start time: a reused pid is not touched
                try:
                    proc.kill()
                except Exception:  # noqa: BLE001 - already gone
                    pass


def _job(url: str, out: Path):
    return api_teacher_config(url, out, out, **{
        "engine.concurrency": "[1,4]", "engine.custom_resources": f"{{{POOL}: 1}}",
        "engine.batch_size": 2, "engine.max_concurrent_requests": 2,
        "generation.tasks_per_request": 1, "generation.requests_per_round": 8,
        "budget.target_tasks": 48, "budget.max_rounds": 12, "responses.chunk_size": 8, "seed": 7,
    })


def _dataset(out: Path) -> list[dict]:
    return read_jsonl(out / "dataset" / "medinstruct.jsonl")


def _wait_for_worker_nodes(sampler: Sampler, count: int, deadline_s: float) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if sampler.sample()["worker_nodes"] == count:
            return True
        time.sleep(1)
    return False


@pytest.fixture(scope="module")
def burst_run(autoscaling_cluster):
    """The uninterrupted run: from no worker node to a burst and back to none."""
    from medforge.generate.pipeline import run_generate

    sampler: Sampler = autoscaling_cluster["sampler"]
    out = autoscaling_cluster["shared"] / "burst"
    assert sampler.sample()["worker_nodes"] == 0  # at rest: the head only
    with StubOpenAI(keyed=True, delay_s=0.5) as stub:
        sampler.mark("burst job starts")
        started = sampler.now()
        summary = run_generate(_job(stub.url, out))
        sampler.mark("burst job ends")
    ended = sampler.now()
    scaled_down = _wait_for_worker_nodes(sampler, 0, deadline_s=120)
    sampler.mark("worker nodes gone" if scaled_down else "worker nodes still up after 120 s")
    return {"out": out, "summary": summary, "started": started, "ended": ended, "scaled_down": scaled_down}


def test_burst_scales_gen_nodes_up_under_load_and_down_when_idle(autoscaling_cluster, burst_run):
    sampler: Sampler = autoscaling_cluster["sampler"]
    summary, out = burst_run["summary"], burst_run["out"]
    during = [r for r in sampler.rows if burst_run["started"] <= r["t"] <= burst_run["ended"]]
    # up: the autoscaler launched more than one gen_node while the job ran, and the pool grew past one actor
    assert max(r["worker_nodes"] for r in during) > 1, during
    assert max(r["client_actors"] for r in during) > 1, during
    assert max(r["worker_nodes"] for r in sampler.rows) <= MAX_WORKERS
    # only nodes of the declared type were launched, and every client actor ran on one of them
    assert sampler.pool_nodes and not sampler.other_nodes
    assert sampler.actor_nodes and set(sampler.actor_nodes.values()) <= sampler.pool_nodes, sampler.actor_nodes
    # the job finished with every row
    rows = _dataset(out)
    lost, dup = dataset_lost_and_duplicated(out, summary)
    assert summary.accepted_tasks == 48 and len(rows) == 48 and (lost, dup) == (0, 0)
    assert summary.responses_failed == 0 and summary.incomplete is None
    # down: after the idle timeout every worker node was removed (polled, generous deadline)
    assert burst_run["scaled_down"], sampler.rows[-5:]


def _raylet_pid(monitor_pid: int, node_id: str) -> int:
    for proc in _descendants(monitor_pid):
        try:
            if proc.name() == "raylet" and f"--node_id={node_id}" in proc.cmdline():
                return proc.pid
        except Exception:  # noqa: BLE001 - exited while we looked
            continue
    raise AssertionError(f"no raylet of node {node_id} among the autoscaler's children")


def test_node_lost_mid_generation_no_row_lost_or_duplicated(autoscaling_cluster, burst_run):
    import ray

    from medforge.generate.pipeline import run_generate

    sampler: Sampler = autoscaling_cluster["sampler"]
    out = autoscaling_cluster["shared"] / "node_loss"
    result: dict = {}

    with StubOpenAI(keyed=True, delay_s=0.5) as stub:
        def run() -> None:
            try:
                result["summary"] = run_generate(_job(stub.url, out))
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                result["error"] = exc

        sampler.mark("node-loss job starts")
        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        victim, on_victim, killed_before_end = None, [], False
        try:
            deadline = time.monotonic() + 300
            while runner.is_alive() and time.monotonic() < deadline:
                # a round saved, and a client actor alive on a gen_node: kill that node
                if (out / "raw" / "round_00000.jsonl").exists():
                    alive = sorted((a["Address"]["NodeID"], aid) for aid, a in ray._private.state.actors().items()
                                   if CLIENT_ACTOR in a["ActorClassName"] and a["State"] == "ALIVE")
                    if alive:
                        victim = alive[0][0]
                        on_victim = [aid for node, aid in alive if node == victim]
                        os.kill(_raylet_pid(autoscaling_cluster["monitor_pid"], victim), signal.SIGKILL)
                        killed_before_end = not (out / "summary.json").exists()
                        sampler.mark("raylet of a gen_node killed")
                        break
                time.sleep(0.2)
        finally:
            runner.join(timeout=600)  # never leave the job running into the fixture's teardown
        sampler.mark("node-loss job ends")
    assert not runner.is_alive(), "the run did not finish after the node was lost"
    if "error" in result:
        raise result["error"]
    assert victim is not None and killed_before_end, "no node was killed mid-run; lengthen the run"
    assert victim in {n["NodeID"] for n in ray.nodes() if not n["Alive"]}
    actors = ray._private.state.actors()
    assert on_victim and all(actors[aid]["State"] == "DEAD" for aid in on_victim)  # went down with the node
    assert len([a for a in actors.values() if CLIENT_ACTOR in a["ActorClassName"]]) > len(on_victim)  # and were replaced
    summary = result["summary"]
    assert dataset_lost_and_duplicated(out, summary) == (0, 0)
    ref, got = _dataset(burst_run["out"]), _dataset(out)
    assert [r["id"] for r in got] == [r["id"] for r in ref]  # the same rows, once each, in the same order
    assert got == ref  # and the same instructions and answers (replies are keyed by the request)
    raw = {p.name: p.read_bytes() for p in (out / "raw").glob("round_*.jsonl")}
    assert raw == {p.name: p.read_bytes() for p in (burst_run["out"] / "raw").glob("round_*.jsonl")}  # every round's replies
