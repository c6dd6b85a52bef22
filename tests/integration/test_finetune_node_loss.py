"""A training worker's whole node lost mid-run (issue 12): a multi-node ``ray.cluster_utils.Cluster``
on one machine, checkpoints and export on S3 (moto's server on loopback), so nothing depends on
the dead node's disk.

The head holds the driver, Ray Train's controller and Ray Data; the two training workers need
``train_pool`` (``scaling.custom_resources``), which only the two worker nodes offer, one each.
Once Ray Train's controller has committed a checkpoint to the bucket, the node of one worker is
killed (its raylet and every process on it), and a replacement node joins as the autoscaler would
add one. ``FailureConfig`` restarts the worker group, which restores the latest checkpoint from
S3 and finishes: no step lost or logged twice.

This replaces the single-node test that SIGKILLed one worker *process*: a node kill kills that
process too, and this test keeps every assertion it made (resumed once, from a committed
checkpoint, at a checkpoint step; steps 1..N each logged once; the run finished).

The run is ZeRO-2 with packed LoRA, and after it a second run with the same storage and a higher
``optim.max_steps`` (a job resubmitted) resumes from the bucket's last checkpoint; the export in
the bucket is the base model with LoRA merged into its targeted modules only. These checks were
test_cluster_storage.py's own fine-tuning run on S3 (two runs of its own), merged here.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from medforge.io import atomic_write_jsonl, storage_filesystem
from medforge.finetune.synthetic import instruction_rows
from trainutils import llm_cfg

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POOL = "train_pool"  # the label resource a training node type would carry (accelerator_type:A100 on a real cluster)
CKPT = "s3://medforge-test/ckpt"
EXPORT = "s3://medforge-test/export"


@pytest.fixture(scope="module")
def cluster(s3_env):
    """Head (CPU only) + two worker nodes with one ``train_pool`` each; every process sees the S3 endpoint."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # another module's local cluster
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 3, "include_dashboard": False})
    workers = [c.add_node(num_cpus=1, resources={POOL: 1}) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False, runtime_env={"env_vars": s3_env})
    yield c, workers
    ray.shutdown()
    c.shutdown()


def _read_json(uri: str):
    fs, path = storage_filesystem(uri)
    try:
        with fs.open_input_stream(path) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def _committed_step(run_uri: str) -> int | None:
    """Step of the latest checkpoint Ray Train's controller has committed, from its snapshot in the bucket."""
    snap = _read_json(f"{run_uri}/checkpoint_manager_snapshot.json")
    latest = (snap or {}).get("latest_checkpoint_result")
    return latest["metrics"]["step"] if latest else None


def _train_workers() -> dict[str, tuple[str, str]]:
    """actor id -> (state, node id) of every Ray Train worker this cluster ever ran (GCS actor table, dead ones too)."""
    import ray

    return {aid: (a["State"], a["Address"]["NodeID"]) for aid, a in ray._private.state.actors().items()
            if a["ActorClassName"] == "RayTrainWorker"}


def test_train_node_lost_mid_run_resumes_from_s3_checkpoint(cluster, tmp_path, tiny_models):
    from medforge.finetune.llm import run_finetune

    c, workers = cluster
    data = tmp_path / "sft.jsonl"
    atomic_write_jsonl(data, instruction_rows(48, seed=0, median_words=12))
    steps, every = 16, 4  # a few packed steps an epoch: the resumed run crosses an epoch boundary
    over = {"deepspeed.zero_stage": 2, "data.packing": True, "lora.enabled": True, "lora.r": 4, "lora.alpha": 8,
            "lora.target_modules": ["q_proj", "v_proj"], "optim.max_steps": steps, "optim.epochs": 100,
            "optim.micro_batch_size": 2, "checkpoint.every_steps": every, "checkpoint.max_failures": 1,
            "data.eval_fraction": 0.0, "checkpoint.storage_path": CKPT, "output.dir": EXPORT,
            "scaling.custom_resources": {POOL: 1}}
    cfg = llm_cfg(tmp_path, tiny_models["llama"], data, **over)
    run_uri = f"{CKPT}/{cfg.checkpoint.name}"
    result: dict = {}

    def fit() -> None:
        try:
            result["summary"] = run_finetune(cfg)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread below
            result["error"] = exc

    runner = threading.Thread(target=fit, daemon=True)
    runner.start()
    victim = committed = replacement = None
    victim_workers: list[str] = []
    deadline = time.time() + 600
    while runner.is_alive() and victim is None and time.time() < deadline:
        # Kill once the controller has committed a checkpoint (its snapshot names one): reports still
        # queued when a worker dies are dropped by Ray Train.
        if _committed_step(run_uri) is not None:
            alive = {aid: node for aid, (state, node) in _train_workers().items() if state == "ALIVE"}
            held = [w for w in workers if w.node_id in alive.values()]
            if len(alive) == 2 and held:
                committed = _committed_step(run_uri)
                victim = held[0]
                victim_workers = [aid for aid, node in alive.items() if node == victim.node_id]
                c.remove_node(victim, allow_graceful=False)  # raylet, the worker and every process on it: gone
                replacement = c.add_node(num_cpus=1, resources={POOL: 1})  # the autoscaler's replacement
                break
        time.sleep(0.3)
    runner.join(timeout=900)
    assert not runner.is_alive(), "training did not finish after the node was lost"
    assert victim is not None, "the run ended before a node could be killed; lengthen it"
    if "error" in result:
        raise result["error"]

    # The kill was real: the dead node held a live training worker, which is now dead.
    everything = _train_workers()
    assert len(victim_workers) == 1 and everything[victim_workers[0]][0] == "DEAD", (victim_workers, everything)
    # Workers ran only where train_pool is offered (never the head), and the restarted group used the new node.
    pool_nodes = {w.node_id for w in workers} | {replacement.node_id}
    assert {node for _, node in everything.values()} <= pool_nodes, everything
    assert any(node == replacement.node_id for _, node in everything.values()), everything
    assert len(everything) == 4, everything  # two groups of two: one restart

    assert result["summary"].step == steps
    hist = _read_json(f"{EXPORT}/training_logs/history.json")
    assert hist, "no history.json in the exported model on S3"
    resumed = [h["step"] for h in hist if h.get("resumed_from_checkpoint")]
    assert len(resumed) == 1 and resumed[0] % every == 0 and committed <= resumed[0] < steps, (committed, resumed)
    train_steps = [h["step"] for h in hist if "train_loss" in h]
    assert train_steps == list(range(1, steps + 1)), train_steps  # no step lost or logged twice
    # The final checkpoint and the export are in the bucket; nothing was written under tmp_path but the data.
    assert _committed_step(run_uri) == steps
    from pyarrow.fs import FileSelector

    fs, root = storage_filesystem(run_uri)
    stored = [f.path for f in fs.get_file_info(FileSelector(root, recursive=True))]
    assert any("/checkpoint_" in p for p in stored), stored[:20]  # Ray Train's checkpoint folders are in the bucket
    fs, path = storage_filesystem(f"{EXPORT}/model.safetensors")
    assert fs.get_file_info(path).size > 0

    # The job resubmitted with a higher max_steps (the first driver gone): the new run resumes from
    # the bucket's last checkpoint, and its history (restored from that checkpoint) goes on from there.
    more = steps + 2
    second = run_finetune(llm_cfg(tmp_path, tiny_models["llama"], data, **{**over, "optim.max_steps": more}))
    assert second.step == more
    hist = _read_json(f"{EXPORT}/training_logs/history.json")
    assert [h["step"] for h in hist if "train_loss" in h] == list(range(1, more + 1))  # 1-16 restored, 17-18 new
    assert [h["step"] for h in hist if h.get("resumed_from_checkpoint")] == [resumed[0], steps]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sft.jsonl"]

    # The export in the bucket is the base model with LoRA merged into its targeted modules only.
    from pyarrow.fs import LocalFileSystem, copy_files
    from transformers import AutoModelForCausalLM

    local = tmp_path / "export_copy"
    efs, eroot = storage_filesystem(EXPORT)
    copy_files(eroot, str(local), source_filesystem=efs, destination_filesystem=LocalFileSystem())
    merged = AutoModelForCausalLM.from_pretrained(local).model.layers[0].self_attn
    base = AutoModelForCausalLM.from_pretrained(tiny_models["llama"]).model.layers[0].self_attn
    assert not merged.q_proj.weight.equal(base.q_proj.weight)  # LoRA merged into a target module
    assert merged.k_proj.weight.equal(base.k_proj.weight)  # untargeted modules untouched
