"""What a Ray Train run asks the cluster for: one bundle per worker, ``num_workers`` of them per
run (the training side of the demands :mod:`medforge.cluster.preflight` checks; the engines'
side is :mod:`medforge.engines.placement`)."""

from __future__ import annotations

from medforge.cluster.resources import Demand, rank_bundle
from medforge.finetune.config import ScalingSection


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
