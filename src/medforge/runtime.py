"""Process-level set-up shared by the jobs: logging and joining or starting Ray."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def init_ray(address: str | None = None, num_cpus: int | None = None, object_store_mib: int | None = None) -> None:
    """Join ``address`` (or ``RAY_ADDRESS``, as set by ``ray job submit``), else start a local cluster.

    The local cluster is always a new, private one (``address="local"``): with no address Ray
    would otherwise join whatever cluster ``ray start`` last recorded in
    ``/tmp/ray/ray_current_cluster`` -- on a shared box, somebody else's.

    A local cluster gets at least 4 logical CPUs: Ray Data's CPU stages and the engine actor
    each hold one, and on a 2-core laptop exact accounting would stall the pipeline.
    ``object_store_mib`` sizes a local cluster's object store (Ray's default: 30% of RAM); it is
    ignored when joining a cluster, whose store was sized when it started.
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        logger.info("joining Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=True)
        return
    cpus = num_cpus or max(4, os.cpu_count() or 1)
    store = object_store_mib * 1024 * 1024 if object_store_mib else None
    logger.info("starting a local Ray cluster with %d logical CPUs%s", cpus,
                f" and a {object_store_mib} MiB object store" if store else "")
    ray.init(address="local", num_cpus=cpus, object_store_memory=store, include_dashboard=False, log_to_driver=True)
