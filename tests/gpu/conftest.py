"""GPU tier: the training checks of the CPU integration tier again, on CUDA with bf16.

Every test here is marked ``gpu`` and is skipped where ``torch.cuda.is_available()`` is false
(every CPU machine, CI included). Run on a GPU machine with ``pytest tests/gpu -m gpu``.
"""

from __future__ import annotations

import pytest


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(items):
    have = _cuda()
    for item in items:
        if "tests/gpu/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.gpu)
            if not have:
                item.add_marker(pytest.mark.skip(reason="no CUDA device (torch.cuda.is_available() is False)"))


@pytest.fixture(scope="session")
def gpu_ray_cluster():
    import ray
    import torch

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=4, num_gpus=torch.cuda.device_count(), include_dashboard=False, log_to_driver=False)
    yield torch.cuda.device_count()
    if started:
        ray.shutdown()
