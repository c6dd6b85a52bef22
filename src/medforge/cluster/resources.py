"""Declared resource demand, the node types a cluster can grow to, and the preflight between them.

On an autoscaled cluster the GPU node types start at ``min_workers: 0``: when a job is
submitted there is no GPU to look at. So medforge never decides placement from what is
running now; a cluster config *declares* what one engine replica or one training worker
needs (GPUs and their accelerator type, CPUs, memory), Ray is asked for exactly that
(placement-group bundles, ``accelerator_type``), and Ray's autoscaler launches the node type
that offers it.

Ray on its own waits forever for a demand no node type can satisfy ("No available node
types can fulfill resource request"). :func:`demand_problems` compares the demand with the
node types the cluster can grow to -- read from the autoscaler's config through Ray
(:func:`discover_node_types`) -- and the job fails in seconds with the resource named.

Everything here but :func:`discover_node_types` is pure and unit-tested without Ray.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medforge.config.base import ConfigError
from medforge.ray_compat import gcs_cluster_config

logger = logging.getLogger(__name__)

# Ray's label resource for a GPU model ("accelerator_type:A100"); a request holds a sliver of it.
ACCELERATOR_PREFIX = "accelerator_type:"
ACCELERATOR_SLIVER = 0.001
UNBOUNDED = sys.maxsize


@dataclass(frozen=True)
class NodeType:
    """One kind of node the cluster has or can launch."""

    name: str
    resources: dict[str, float]
    max_nodes: int  # how many of them the cluster can hold at once (UNBOUNDED: no cap)


@dataclass
class Demand:
    """What one job stage asks Ray for: ``replicas`` copies of a group of ``bundles``.

    ``field`` is the config field a user changes to fix it (used in messages); ``fix`` is the hint.
    """

    field: str
    bundles: list[dict[str, float]]
    replicas: int = 1
    fix: str = ""
    notes: list[str] = field(default_factory=list)


def accelerator_resource(accelerator_type: str) -> str:
    return f"{ACCELERATOR_PREFIX}{accelerator_type}"


def custom_resource_problems(custom: dict[str, float], field: str, reserved_fix: str,
                             accelerator_labels: bool = False) -> list[str]:
    """Keys of a ``custom_resources`` field that Ray reserves, or amounts that are not positive.

    ``CPU``/``GPU``/``memory`` (and ``accelerator_type:X``, unless ``accelerator_labels``: a config with
    no accelerator field of its own) are declared elsewhere (``reserved_fix`` says where); given twice,
    Ray would see a conflicting request. A node-type label resource (``{"train_pool": 1}``) is what
    belongs here.
    """
    problems = []
    for key, value in custom.items():
        if key in ("CPU", "GPU", "memory") or (key.startswith(ACCELERATOR_PREFIX) and not accelerator_labels):
            problems.append(f"{field} has {key!r}; {reserved_fix}")
        elif value <= 0:
            problems.append(f"{field}[{key!r}] = {value}: must be > 0 (a sliver such as 0.01 shares a node)")
    return problems


def rank_bundle(*, gpu: bool, cpus: float, accelerator_type: str | None = None,
                memory_bytes: int | None = None, custom: dict[str, float] | None = None) -> dict[str, float]:
    """The Ray bundle of one engine rank or training worker, exactly as declared."""
    bundle: dict[str, float] = {"CPU": float(cpus)}
    if gpu:
        bundle["GPU"] = 1.0
    if memory_bytes:
        bundle["memory"] = float(memory_bytes)
    if accelerator_type:
        bundle[accelerator_resource(accelerator_type)] = ACCELERATOR_SLIVER
    for key, value in (custom or {}).items():
        bundle[key] = float(value)
    return bundle


# ----------------------------------------------------------------------------- node types
def node_types_from_autoscaler_config(config: dict[str, Any]) -> list[NodeType]:
    """Node types of a cluster launcher config (``cluster.yaml`` / Ray's ``ray_bootstrap_config.yaml``).

    The head counts once; a worker type counts ``min(max_workers, the cluster's max_workers)``.
    """
    types = config.get("available_node_types") or {}
    head = config.get("head_node_type")
    cluster_max = config.get("max_workers")
    out = []
    for name, spec in types.items():
        spec = spec or {}
        if name == head:
            count = 1 + int(spec.get("max_workers", 0) or 0)
        else:
            count = int(spec.get("max_workers", cluster_max if cluster_max is not None else 0) or 0)
            if cluster_max is not None:
                count = min(count, int(cluster_max))
        out.append(NodeType(name, {k: float(v) for k, v in (spec.get("resources") or {}).items()}, count))
    return out


def node_types_from_cluster_config_proto(proto: Any) -> list[NodeType]:
    """Node types of the autoscaler's ``ClusterConfig`` that Ray keeps in the GCS (autoscaler v2, KubeRay)."""
    out = []
    for group in proto.node_group_configs:
        count = UNBOUNDED if group.max_count == -1 else int(group.max_count)
        out.append(NodeType(group.name or "node_group", {k: float(v) for k, v in group.resources.items()}, count))
    return out


def node_types_from_live_nodes(nodes: list[dict[str, Any]]) -> list[NodeType]:
    """The nodes up now (``ray.nodes()``), identical ones grouped: the capacity of a fixed-size cluster."""
    groups: dict[tuple, int] = {}
    for node in nodes:
        if not node.get("Alive", node.get("alive", True)):
            continue
        res = {k: float(v) for k, v in (node.get("Resources") or {}).items() if not k.startswith("node:")}
        key = tuple(sorted(res.items()))
        groups[key] = groups.get(key, 0) + 1
    return [NodeType(f"live_node_{i}", dict(key), n) for i, (key, n) in enumerate(sorted(groups.items()))]


def _bootstrap_config_path() -> Path | None:
    explicit = os.environ.get("MEDFORGE_AUTOSCALER_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    default = Path("~/ray_bootstrap_config.yaml").expanduser()  # written by `ray up` on the head
    return default if default.is_file() else None


def discover_node_types() -> tuple[str, list[NodeType]]:
    """What the joined cluster can grow to, and where that was read from.

    In order: the autoscaler's cluster config in the GCS (:func:`medforge.ray_compat.gcs_cluster_config`; reported by
    autoscaler v2 and KubeRay), the autoscaler config on the head (``~/ray_bootstrap_config.yaml``,
    which ``ray up`` writes and the autoscaler reads; ``MEDFORGE_AUTOSCALER_CONFIG`` overrides the
    path), else the nodes up now (a laptop, or a cluster without an autoscaler).
    """
    import ray

    try:
        proto = gcs_cluster_config()
    except Exception as exc:  # noqa: BLE001 - an older GCS without it: fall through to the next source
        logger.debug("no cluster config in the GCS: %s", exc)
        proto = None
    if proto is not None and proto.node_group_configs:
        return "the autoscaler's cluster config (GCS)", node_types_from_cluster_config_proto(proto)
    path = _bootstrap_config_path()
    if path is not None:
        import yaml

        if not path.is_file():
            raise ConfigError("cluster resources", [f"MEDFORGE_AUTOSCALER_CONFIG = {str(path)!r}: no such file; fix: "
                                                    "point it at the autoscaler config or unset it"])
        types = node_types_from_autoscaler_config(yaml.safe_load(path.read_text()) or {})
        if types:
            return f"the autoscaler config {path}", types
    return "the nodes up now (no autoscaler config found)", node_types_from_live_nodes(ray.nodes())


# ----------------------------------------------------------------------------- preflight
def _fits(bundle: dict[str, float], resources: dict[str, float]) -> bool:
    return all(resources.get(k, 0.0) + 1e-9 >= v for k, v in bundle.items() if v > 0)


def _amount(key: str, value: float) -> str:
    if value == math.inf:
        return "unbounded"
    return f"{value / 2**30:.4g} GiB" if key in ("memory", "object_store_memory") else f"{value:g}"


def _show(res: dict[str, float]) -> str:
    def one(k: str, v: float) -> str:
        return k if k.startswith(ACCELERATOR_PREFIX) else f"{k}: {_amount(k, v)}"

    return "{" + ", ".join(one(k, v) for k, v in sorted(res.items()) if k != "object_store_memory") + "}"


def _count(n: int) -> str:
    return "unbounded" if n >= UNBOUNDED else f"max {n}"


def _summary(node_types: list[NodeType]) -> str:
    return "; ".join(f"{t.name} {_show(t.resources)} ({_count(t.max_nodes)})" for t in node_types) or "none"


def demand_problems(demands: list[Demand], node_types: list[NodeType], source: str) -> list[str]:
    """Problem lines for demands the cluster can never satisfy, each naming the resource.

    Two checks per demand: every bundle fits on at least one node type (a GPU count, an
    accelerator type or a CPU/memory size no node type offers), and the node types' total
    at their ``max_workers`` holds ``replicas`` copies of the whole group.
    """
    problems = []
    known = _summary(node_types)
    for d in demands:
        for bundle in {tuple(sorted(b.items())): b for b in d.bundles}.values():
            if any(_fits(bundle, t.resources) for t in node_types if t.max_nodes > 0):
                continue
            short = []
            for key, need in sorted(bundle.items()):
                best = max((t.resources.get(key, 0.0) for t in node_types if t.max_nodes > 0), default=0.0)
                if best + 1e-9 < need:
                    if key.startswith(ACCELERATOR_PREFIX):
                        short.append(f"{key} (no node type carries it)")
                    else:
                        short.append(f"{key} >= {_amount(key, need)} (largest offered: {_amount(key, best)})")
            if not short:  # each resource exists somewhere, but never together on one node type
                short.append("all of them on one node")
            problems.append(
                f"{d.field}: one rank/worker needs {_show(bundle)}; no node type this cluster can grow to offers "
                f"{', '.join(short)}. Node types ({source}): {known}; fix: {d.fix or 'change the demand or add a node type'}"
            )
        if problems:
            continue
        # Capacity: how many of each bundle shape the node types that can host it hold at max_workers.
        shapes: dict[tuple, int] = {}
        for b in d.bundles:
            shapes[tuple(sorted(b.items()))] = shapes.get(tuple(sorted(b.items())), 0) + d.replicas
        for shape, need in shapes.items():
            bundle = dict(shape)
            have, limits = 0, []
            for t in node_types:
                if t.max_nodes <= 0 or not _fits(bundle, t.resources):
                    continue
                key, per_node = min(((k, math.floor(t.resources.get(k, 0.0) / v + 1e-9)) for k, v in bundle.items()
                                     if v > 0 and not k.startswith(ACCELERATOR_PREFIX)), key=lambda kv: kv[1],
                                    default=("", UNBOUNDED))
                have = UNBOUNDED if t.max_nodes >= UNBOUNDED else min(UNBOUNDED, have + per_node * t.max_nodes)
                limits.append(f"{t.name}: {per_node} per node by {key} x {_count(t.max_nodes)}")
            if have < need:
                problems.append(
                    f"{d.field}: {d.replicas} replica(s) need {need} x {_show(bundle)}; the node types that can host "
                    f"one hold at most {have} at max_workers ({'; '.join(limits)}). Node types ({source}): {known}; "
                    f"fix: {d.fix or 'lower the demand or raise max_workers'}"
                )
    return problems


def check_demands(demands: list[Demand], stage: str,
                  discovered: tuple[str, list[NodeType]] | None = None) -> None:
    """Raise ``ConfigError`` (in seconds, before any actor waits) when the joined cluster can never hold ``demands``."""
    if not demands:
        return
    source, node_types = discovered or discover_node_types()
    logger.info("%s: demand %s checked against %s: %s", stage,
                [(d.field, d.replicas, d.bundles) for d in demands], source, _summary(node_types))
    problems = demand_problems(demands, node_types, source)
    if problems:
        raise ConfigError(f"{stage} (cluster resources)", problems)
