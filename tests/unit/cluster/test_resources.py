"""Declared demand vs the node types a cluster can grow to (pure: no Ray)."""

from __future__ import annotations

import pytest

from medforge.cluster.preflight import module_problems, storage_problems
from medforge.finetune.placement import train_demand
from medforge.cluster.resources import (
    Demand,
    NodeType,
    demand_problems,
    node_types_from_autoscaler_config,
    node_types_from_live_nodes,
)
from medforge.engines.config import OpenAITeacherConfig, VLLMTeacherConfig
from medforge.engines.placement import VLLM_FIX, api_demand, auto_placement_problem, vllm_demand, vllm_rank_bundles
from medforge.finetune.config import ScalingSection

AUTOSCALER = {
    "max_workers": 10,
    "head_node_type": "head",
    "available_node_types": {
        "head": {"resources": {"CPU": 8}, "node_config": {}},
        "gen_l4": {"min_workers": 0, "max_workers": 4,
                   "resources": {"CPU": 192, "GPU": 8, "accelerator_type:L4": 1}},
        "train_a100": {"min_workers": 0, "max_workers": 2,
                       "resources": {"CPU": 96, "GPU": 8, "accelerator_type:A100": 1, "memory": 1000 * 2**30}},
    },
}
TYPES = node_types_from_autoscaler_config(AUTOSCALER)


def _teacher(**kw) -> VLLMTeacherConfig:
    return VLLMTeacherConfig(model="org/model", placement="gpu", **kw)


def test_node_types_read_from_autoscaler_config():
    by_name = {t.name: t for t in TYPES}
    assert by_name["head"].max_nodes == 1
    assert by_name["gen_l4"].max_nodes == 4 and by_name["gen_l4"].resources["GPU"] == 8
    capped = node_types_from_autoscaler_config({**AUTOSCALER, "max_workers": 3})
    assert {t.name: t.max_nodes for t in capped}["gen_l4"] == 3  # the cluster-wide cap applies


def test_gpu_teacher_on_cluster_at_rest_fits():
    # no GPU node is up (min_workers 0), but the autoscaler can launch L4 nodes: no problem
    d = vllm_demand(_teacher(tensor_parallel_size=8, accelerator_type="L4", concurrency=(1, 4)), use_gpu=True)
    assert demand_problems([d], TYPES, "test") == []
    assert d.bundles[0] == {"CPU": 1.0, "GPU": 1.0, "accelerator_type:L4": 0.001}
    assert len(d.bundles) == 8


def test_api_teacher_declares_a_demand_only_with_custom_resources():
    api = dict(kind="openai", base_url="http://127.0.0.1:1/v1", model="m")
    assert api_demand(OpenAITeacherConfig(**api, concurrency=4)) is None  # a fixed pool of 4, anywhere
    d = api_demand(OpenAITeacherConfig(**api, concurrency=[1, 4], custom_resources={"accelerator_type:L4": 1}))
    assert d.bundles == [{"CPU": 0.25, "accelerator_type:L4": 1.0}] and d.replicas == 1  # the minimum must fit
    assert demand_problems([d], TYPES, "test") == []
    missing = api_demand(OpenAITeacherConfig(**api, custom_resources={"egress_pool": 1}))
    [problem] = demand_problems([missing], TYPES, "test")
    assert "egress_pool" in problem and "custom_resources" in problem
    with pytest.raises(ValueError, match=r"need 1 <= min <= max"):
        OpenAITeacherConfig(**api, concurrency=[3, 2])
    with pytest.raises(ValueError, match=r"custom_resources has 'GPU'"):
        OpenAITeacherConfig(**api, custom_resources={"GPU": 1})
    with pytest.raises(ValueError, match=r"custom_resources\['egress_pool'\] = 0.0: must be > 0"):
        OpenAITeacherConfig(**api, custom_resources={"egress_pool": 0})


def test_unknown_accelerator_named():
    d = vllm_demand(_teacher(accelerator_type="H100"), use_gpu=True)
    problems = demand_problems([d], TYPES, "test")
    assert len(problems) == 1
    assert "accelerator_type:H100 (no node type carries it)" in problems[0]
    assert "gen_l4" in problems[0]  # the node types are listed


def test_too_many_gpus_in_total_named():
    # 5 replicas x 8 L4 ranks: 40 L4 GPUs, but 4 nodes x 8 = 32 at most (A100 nodes are another type)
    d = vllm_demand(_teacher(tensor_parallel_size=8, accelerator_type="L4", concurrency=(5, 5)), use_gpu=True)
    problems = demand_problems([d], TYPES, "test")
    assert len(problems) == 1 and "5 replica(s) need 40 x" in problems[0], problems
    assert "gen_l4: 8 per node by GPU x max 4" in problems[0]
    # without the accelerator label the A100 nodes count too: 48 GPUs >= 40
    assert demand_problems([vllm_demand(_teacher(tensor_parallel_size=8, concurrency=(5, 5)), True)], TYPES, "t") == []


def test_cpu_per_rank_too_large_named():
    problems = demand_problems([vllm_demand(_teacher(cpus_per_rank=500), True)], TYPES, "test")
    assert len(problems) == 1 and "CPU >= 500 (largest offered: 192)" in problems[0]


def test_resources_never_together_on_one_node():
    # L4 GPUs exist (gen_l4) and memory exists (train_a100), never on one node type
    s = ScalingSection(num_workers=1, use_gpu=True, accelerator_type="L4", memory_gib_per_worker=10)
    problems = demand_problems([train_demand(s)], TYPES, "test")
    assert len(problems) == 1 and "offers all of them on one node" in problems[0]


def test_training_demand_at_rest():
    ok = ScalingSection(num_workers=16, use_gpu=True, accelerator_type="A100", cpus_per_worker=8, memory_gib_per_worker=100)
    assert demand_problems([train_demand(ok)], TYPES, "test") == []
    too_many = ok.model_copy(update={"num_workers": 17})
    problems = demand_problems([train_demand(too_many)], TYPES, "test")
    assert len(problems) == 1 and "need 17 x" in problems[0] and "train_a100: 8 per node by GPU x max 2" in problems[0]
    # 100 GiB each: memory, not GPUs, caps a node at 10 workers -> 20 >= 17 fits; 200 GiB -> 5 per node
    big = ok.model_copy(update={"memory_gib_per_worker": 200, "num_workers": 11})
    problems = demand_problems([train_demand(big)], TYPES, "test")
    assert len(problems) == 1 and "5 per node by memory" in problems[0]


def test_live_nodes_grouped_and_node_keys_dropped():
    nodes = [{"Alive": True, "Resources": {"CPU": 4.0, "node:10.0.0.1": 1.0}},
             {"Alive": True, "Resources": {"CPU": 4.0, "node:10.0.0.2": 1.0}},
             {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}]
    types = node_types_from_live_nodes(nodes)
    assert [(t.resources, t.max_nodes) for t in types] == [({"CPU": 4.0}, 2)]
    problems = demand_problems([Demand("x", [{"CPU": 1, "GPU": 1}])], types, "live")
    assert problems and "GPU >= 1 (largest offered: 0)" in problems[0]


def test_cpu_placement_bundles_keep_custom_label():
    t = VLLMTeacherConfig(model="org/m", placement="cpu", tensor_parallel_size=2, custom_resources={"gen_pool": 0.01})
    assert vllm_rank_bundles(t, use_gpu=False) == [{"CPU": 1.0, "gen_pool": 0.01}] * 2


def test_declared_resources_need_explicit_placement():
    with pytest.raises(ValueError, match="placement=auto with declared resources"):
        VLLMTeacherConfig(model="org/m", accelerator_type="L4")
    with pytest.raises(ValueError, match="custom_resources has 'GPU'"):
        VLLMTeacherConfig(model="org/m", placement="gpu", custom_resources={"GPU": 1})


def test_auto_placement_refused_with_cluster_storage():
    auto = VLLMTeacherConfig(model="org/m")
    assert auto_placement_problem(auto, {"output.dir": "runs/x"}) is None
    problem = auto_placement_problem(auto, {"output.dir": "/mnt/shared/runs/x"})
    assert problem and "declare engine.placement: gpu" in problem
    assert auto_placement_problem(_teacher(), {"output.dir": "/mnt/shared/runs/x"}) is None


def test_local_path_refused_on_multinode(monkeypatch):
    monkeypatch.delenv("MEDFORGE_SHARED_MOUNTS", raising=False)
    assert storage_problems({"output.dir": "/tmp/run"}, nodes=1) == []
    problems = storage_problems({"output.dir": "/tmp/run", "ckpt": "/mnt/shared/ckpt"}, nodes=3)
    assert len(problems) == 1 and "output.dir = '/tmp/run': a local path" in problems[0]
    monkeypatch.setenv("MEDFORGE_SHARED_MOUNTS", "/tmp")
    assert storage_problems({"output.dir": "/tmp/run"}, nodes=3) == []


def test_unwritable_local_folder_is_reported(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        from medforge.io import storage_write_problem

        problem = storage_write_problem(str(ro / "sub"), "checkpoint.storage_path")
        import os

        if os.geteuid() == 0:  # root writes anywhere: nothing to refuse
            assert problem is None
        else:
            assert problem and "cannot be written" in problem
    finally:
        ro.chmod(0o700)


def test_missing_runtime_module_named_with_the_fix():
    assert module_problems({"json": "never shown"}) == []
    problems = module_problems({"medforge_no_such_module": VLLM_FIX})
    assert problems == [f"python module 'medforge_no_such_module' is not installed in this environment; fix: {VLLM_FIX}"]


def test_missing_autoscaler_config_file_is_a_config_error(monkeypatch, tmp_path):
    from medforge.cluster.resources import discover_node_types
    from medforge.config.base import ConfigError

    monkeypatch.setenv("MEDFORGE_AUTOSCALER_CONFIG", str(tmp_path / "nope.yaml"))
    monkeypatch.setattr("medforge.cluster.resources.gcs_cluster_config", lambda: None)
    with pytest.raises(ConfigError, match="MEDFORGE_AUTOSCALER_CONFIG = .*nope.yaml': no such file"):
        discover_node_types()


def test_batch_and_serve_configs_ask_ray_for_the_declared_bundles():
    """Ray's own config objects (built, not run) carry exactly the declared demand."""
    from medforge.engines.chat import build_vllm_processor_config
    from medforge.serve.config import LLMServeConfig
    from medforge.serve.llm import build_llm_config

    teacher = _teacher(tensor_parallel_size=2, accelerator_type="L4", cpus_per_rank=2)
    proc = build_vllm_processor_config(teacher, use_gpu=True)
    assert proc.placement_group_config["bundles"] == [{"CPU": 2.0, "GPU": 1.0}] * 2
    assert proc.accelerator_type == "L4"  # Ray's vLLM stage adds accelerator_type:L4 to each bundle
    serve = build_llm_config(LLMServeConfig(model_id="m", engine=teacher), use_gpu=True)
    assert serve.accelerator_type == "L4"
    assert serve.placement_group_config["bundles"] == [{"CPU": 2.0, "GPU": 1.0}] * 2


def test_training_workers_pinned_to_a_custom_resource():
    # a worker node type carries a label resource; the head does not
    types = [NodeType("head", {"CPU": 8}, 1), NodeType("train_cpu", {"CPU": 4, "train_pool": 1}, 3)]
    s = ScalingSection(num_workers=3, custom_resources={"train_pool": 1})
    d = train_demand(s)
    assert d.bundles == [{"CPU": 1.0, "train_pool": 1.0}] and "custom_resources={'train_pool': 1.0}" in d.field
    assert demand_problems([d], types, "test") == []
    # one label per node: 4 workers need 4 nodes of that type, 3 at most (the head's CPUs do not count)
    problems = demand_problems([train_demand(s.model_copy(update={"num_workers": 4}))], types, "test")
    assert len(problems) == 1 and "4 replica(s) need 4 x" in problems[0] and "train_pool" in problems[0], problems
    missing = demand_problems([train_demand(ScalingSection(custom_resources={"gpu_pool": 1}))], types, "test")
    assert len(missing) == 1 and "gpu_pool" in missing[0], missing

    from medforge.finetune.common import ray_scaling_config

    assert ray_scaling_config(s).resources_per_worker == {"CPU": 1.0, "train_pool": 1.0}


def test_training_custom_resources_validated():
    with pytest.raises(ValueError, match="custom_resources has 'GPU'; use cpus_per_worker / use_gpu"):
        ScalingSection(custom_resources={"GPU": 1})
    with pytest.raises(ValueError, match="custom_resources has 'accelerator_type:A100'"):
        ScalingSection(custom_resources={"accelerator_type:A100": 0.001})
    with pytest.raises(ValueError, match=r"custom_resources\['train_pool'\] = 0.0: must be > 0"):
        ScalingSection(custom_resources={"train_pool": 0})


def test_concurrent_runs_multiply_the_training_demand():
    s = ScalingSection(num_workers=8, use_gpu=True, accelerator_type="A100")
    assert demand_problems([train_demand(s, runs=2)], TYPES, "test") == []  # 16 A100s: two train_a100 nodes
    problems = demand_problems([train_demand(s, runs=3)], TYPES, "test")
    assert len(problems) == 1 and "x 3 concurrent runs" in problems[0] and "need 24 x" in problems[0], problems
    assert "concurrent_seeds" in problems[0]
