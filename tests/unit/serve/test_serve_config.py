"""The serving YAMLs and their validation (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medforge.config.base import ConfigError
from medforge.serve.cli import load_serve_file

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("path", sorted((REPO / "serving").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_serving_files_validate_and_carry_both_commands(path, tiny_models):
    text = path.read_text()
    assert "medforge serve --config serving/" in text and "serve run serving/" in text
    assert "ray job submit" in text
    overrides = []
    if "local_tiny" in path.name:
        overrides = [f"llm.engine.model={tiny_models['llama']}"]
    if "cluster" in path.name:
        pytest.skip("cluster checkpoints are not on this machine")
    data = load_serve_file(path, overrides)
    assert data["applications"]


def test_every_problem_is_reported_at_once(tmp_path, tiny_models):
    f = tmp_path / "s.yaml"
    f.write_text(
        "applications:\n"
        "  - name: llm\n"
        "    import_path: medforge.serve.llm:app_builder\n"
        "    args:\n"
        f"      model_id: 'bad:id'\n"
        f"      engine: {{model: {tiny_models['llama']}}}\n"
        "      adapters: {'a/b': /nonexistent}\n"
        "      autoscaling: {min_replicas: 3, max_replicas: 2}\n"
        "      typo: 1\n"
        "  - name: other\n"
        "    import_path: somewhere:else\n")
    with pytest.raises(ConfigError) as exc:
        load_serve_file(f, ["llm.max_lora_rank=0", "nope.x=1"])
    text = str(exc.value)
    for needle in ("llm.model_id", "llm.adapters", "no adapter_config.json", "max_replicas=2 < min_replicas=3",
                   "llm.typo", "unknown key", "llm.max_lora_rank", "somewhere:else", "no application named 'nope'"):
        assert needle in text, needle
