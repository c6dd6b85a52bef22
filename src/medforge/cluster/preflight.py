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

from medforge.cluster.resources import (
    UNBOUNDED,
    Demand,
    NodeType,
    check_demands,
    discover_node_types,
)
from medforge.config.base import ConfigError
from medforge.io import is_uri, local_path_problem, storage_write_problem

logger = logging.getLogger(__name__)


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
