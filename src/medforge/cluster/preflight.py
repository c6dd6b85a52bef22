"""The checks every job runs after joining Ray and before it asks for an actor or writes a row.

* The declared demand (engine replicas, training workers) against the node types the cluster
  can grow to (:mod:`medforge.cluster.resources`).
* Storage: on a cluster of several nodes (or one that can grow to several), every run folder,
  checkpoint store and export must be shared storage (a URI or a shared mount); a URI is
  probed with a real write, so a missing bucket or permission fails in seconds.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import TYPE_CHECKING

from medforge.cluster.resources import UNBOUNDED, Demand, NodeType, check_demands, discover_node_types, rank_bundle
from medforge.config.base import ConfigError
from medforge.io import is_uri, local_path_problem, storage_write_problem

if TYPE_CHECKING:
    from medforge.train.config import ScalingSection

logger = logging.getLogger(__name__)


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


def module_problems(modules: dict[str, str]) -> list[str]:
    """Python modules a job's actors will import, missing from this environment (module -> the fix).

    The driver runs in the cluster's image, as the workers do: a module missing here would
    otherwise surface as actors dying at start, over and over, deep in Ray's logs.
    """
    return [f"python module {name!r} is not installed in this environment; fix: {fix}"
            for name, fix in modules.items() if importlib.util.find_spec(name) is None]
