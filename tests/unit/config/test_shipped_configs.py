"""Every YAML shipped under configs/ loads and validates against its job's model."""

from pathlib import Path

import pytest

from medforge.config.base import load_config
from medforge.config.registry import config_model_for

REPO = Path(__file__).resolve().parents[3]
# the jobs' configs (configs/serve/ holds Ray Serve files: tests/unit/serve/test_serve_config.py)
CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.yaml") if p.parent.name != "serve")


def test_there_are_configs():
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_config_validates(path, tiny_models, monkeypatch):
    # Local configs name .tiny_models/...; point that at the session's tiny models.
    monkeypatch.chdir(tiny_models["llama"].parent.parent)
    link = tiny_models["llama"].parent.parent / ".tiny_models"
    if not link.exists():
        link.symlink_to(tiny_models["llama"].parent)
    # local_small configs name .small_models/...: validation needs a folder with a config.json there
    # (building the real small models takes a minute; tests/integration builds and runs them).
    for name in ("smollm2-135m-instruct", "all-minilm-l6-v2"):
        folder = tiny_models["llama"].parent.parent / ".small_models" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text("{}")
    model = config_model_for(path)
    text = path.read_text()
    assert "ray job submit" in text, f"{path} header must carry the ray job submit command"
    # Cluster configs name hub ids and shared storage that do not exist here.
    overrides = []
    if path.parent.name == "generate" and "/mnt/" in text:
        overrides.append("seeds.path=null")
    if path.parent.name == "pipeline" and "/mnt/" in text:
        overrides.append("generate.seeds.path=null")
    if path.name == "cluster.yaml" and path.parent.name == "evaluate":  # the fine-tune's export, on the cluster's mount
        overrides.append(f"engine.model={tiny_models['llama']}")
    load_config(model, path, overrides)
