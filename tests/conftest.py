"""Shared fixtures: paths, the shared AlpaCare data, tiny models built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_ALPACARE = REPO.parent / "shared" / "data" / "alpacare"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def alpacare_dir() -> Path:
    """AlpaCare's CC BY-NC data, read from ../shared (never copied into the repo)."""
    if not (SHARED_ALPACARE / "med_seed.json").is_file():
        pytest.skip(f"AlpaCare data not found at {SHARED_ALPACARE}")
    return SHARED_ALPACARE


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """The tiny random LLaMA and BERT, built offline once per session."""
    from medforge.engines.tiny import make_tiny_models

    cache = os.environ.get("MEDFORGE_TINY_MODELS")
    out = Path(cache) if cache else tmp_path_factory.mktemp("tiny_models")
    return make_tiny_models(out)


@pytest.fixture(scope="session")
def small_models(tmp_path_factory) -> dict[str, Path]:
    """The small REAL models (SmolLM2-135M-Instruct, all-MiniLM-L6-v2), built once per session
    from the PyPI wheels that scripts/bootstrap.sh installs. MEDFORGE_SMALL_MODELS names a
    folder to reuse across sessions (the build takes about a minute)."""
    from medforge.engines.small import make_small_models

    cache = os.environ.get("MEDFORGE_SMALL_MODELS")
    out = Path(cache) if cache else tmp_path_factory.mktemp("small_models")
    return make_small_models(out)
