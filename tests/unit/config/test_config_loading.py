from pathlib import Path

import pytest

from medforge.config.base import ConfigError, load_config, parse_overrides
from medforge.generate.config import GenerateConfig


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


BASE = """
teacher:
  kind: openai
  base_url: http://127.0.0.1:9/v1
  model: m
output:
  dir: {out}
"""


def test_overrides_are_typed_and_nested():
    assert parse_overrides(["a.b=1", "a.c=1e-4", "d=true", "e=[1, 4]", "f=x"]) == {
        "a": {"b": 1, "c": 1e-4}, "d": True, "e": [1, 4], "f": "x"
    }


def test_override_without_equals_is_rejected():
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_overrides(["--lr", "3"])


def test_load_applies_overrides(tmp_path):
    cfg = load_config(GenerateConfig, _write(tmp_path, BASE.format(out=tmp_path)),
                      ["budget.target_tasks=7", "generation.sampling.temperature=0.5"])
    assert cfg.budget.target_tasks == 7
    assert cfg.generation.sampling.temperature == 0.5
    assert cfg.engine.kind == "openai"


def test_all_problems_reported_at_once_with_field_value_and_fix(tmp_path):
    text = BASE.format(out=tmp_path) + "budget:\n  target_tasks: -3\n  tagret: 1\n"
    with pytest.raises(ConfigError) as info:
        load_config(GenerateConfig, _write(tmp_path, text), ["generation.sampling.top_p=7"])
    msg = str(info.value)
    assert len(info.value.problems) == 3, msg
    assert "budget.tagret" in msg and "unknown key" in msg and "remove it" in msg
    assert "budget.target_tasks = -3" in msg
    assert "generation.sampling.top_p = 7" in msg


def test_missing_model_folder_names_the_fix(tmp_path):
    text = f"teacher:\n  kind: vllm\n  model: {tmp_path}/nope\noutput:\n  dir: {tmp_path}\n"
    with pytest.raises(ConfigError) as info:
        load_config(GenerateConfig, _write(tmp_path, text))
    assert "does not exist" in str(info.value) and "make-tiny-models" in str(info.value)


def test_missing_seed_file_is_a_config_error(tmp_path):
    text = BASE.format(out=tmp_path) + f"seeds:\n  path: {tmp_path}/missing.json\n"
    with pytest.raises(ConfigError, match="seeds.path"):
        load_config(GenerateConfig, _write(tmp_path, text))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(GenerateConfig, tmp_path / "nope.yaml")


def test_a_mapping_override_merges_and_an_empty_one_clears(tmp_path):
    from medforge.config.base import _deep_merge

    merged = load_config(GenerateConfig, _write(tmp_path, BASE.format(out=tmp_path)), ["teacher={model: m2}"])
    assert merged.engine.model == "m2" and merged.engine.base_url == "http://127.0.0.1:9/v1"  # merged key by key
    assert _deep_merge({"a": {"x": 1}, "b": 2}, {"a": {}}) == {"a": {}, "b": 2}  # `a={}` clears a
    assert _deep_merge({"a": {"x": 1}}, {"a": {"y": 2}}) == {"a": {"x": 1, "y": 2}}


def test_an_override_that_switches_the_engine_kind_replaces_the_section(tmp_path):
    """``engine={kind: scripted}`` over an API engine: the API-only keys (base_url, ...) go with the
    old kind instead of failing as unknown keys of the new one; the same kind still merges."""
    from medforge.config.base import _deep_merge

    path = _write(tmp_path, BASE.format(out=tmp_path))
    switched = load_config(GenerateConfig, path, ["engine={kind: scripted, model: s}"])
    assert switched.engine.kind == "scripted" and switched.engine.model == "s"
    same = load_config(GenerateConfig, path, ["engine={kind: openai, model: m2}"])
    assert same.engine.model == "m2" and same.engine.base_url == "http://127.0.0.1:9/v1"
    # only command-line overrides switch; the pipeline's wiring updates merge as before
    assert _deep_merge({"e": {"kind": "a", "x": 1}}, {"e": {"kind": "b"}}) == {"e": {"kind": "b", "x": 1}}
    assert _deep_merge({"e": {"kind": "a", "x": 1}}, {"e": {"kind": "b"}}, kind_replaces=True) == {"e": {"kind": "b"}}
