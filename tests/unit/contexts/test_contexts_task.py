import json
from pathlib import Path

import pytest

from medforge.contexts import task


def test_format_input_has_five_demos_and_only_payload():
    msgs = task.format_input(["fever", "cough"], {"A": "Pneumonia", "B": "Asthma"}, "json")
    assert msgs[0]["role"] == "system" and len(msgs) == 1 + 2 * 5 + 1
    last = msgs[-1]["content"]
    assert "Keywords: fever, cough" in last and "(A) Pneumonia" in last and "(B) Asthma" in last
    for m in msgs[2:-1:2]:  # demonstrations parse under their own letters
        parsed, why = task.format_output(m["content"], [ln[1] for ln in msgs[msgs.index(m) - 1]["content"].splitlines() if ln.startswith("(")])
        assert parsed, why


def test_text_layout_demos_parse():
    msgs = task.format_input(["x"], {"A": "a", "B": "b"}, "text")
    assert "Overall context:" in msgs[2]["content"] and "Preliminary answer: A" in msgs[2]["content"]
    letters = list(task.demonstrations()[0]["options"])
    parsed, why = task.format_output(msgs[2]["content"], letters)
    assert parsed and parsed["option_contexts"]["D"] == task.NO_RELATION


def test_parse_json_with_fence():
    body = {"overall_context": "ctx", "option_contexts": {"A": "a", "B": "b"}, "preliminary_answer": "B"}
    parsed, _ = task.format_output("```json\n" + json.dumps(body) + "\n```", ["A", "B"])
    assert parsed == body


def test_parse_tolerant_text():
    text = ("**Overall context:** a picture\ncontinues here\n(A): first\nOption B context - second\n"
            "Preliminary answer: (B)")
    parsed, why = task.format_output(text, ["A", "B"])
    assert parsed == {"overall_context": "a picture continues here", "option_contexts": {"A": "first", "B": "second"},
                      "preliminary_answer": "B"}, why


@pytest.mark.parametrize("text, reason", [
    ("", "empty reply"),
    ("   ", "empty reply"),
    ("lorem ipsum }{", "no overall context"),
    ("Overall context: x\nOption A context: a\nPreliminary answer: A", "no context for option(s) B"),
    ("Overall context: x\nOption A context: a\nOption B context: b\nPreliminary answer: Q", "preliminary answer"),
    ('{"overall_context": "x", "option_contexts": {"A": "a", "B": "b", "C": "c"}, "preliminary_answer": "A"}', "unknown option"),
])
def test_malformed(text, reason):
    parsed, why = task.format_output(text, ["A", "B"])
    assert parsed is None and reason in why


def test_schema_and_hash():
    s = task.json_schema(["A", "B", "C"])
    assert s["properties"]["option_contexts"]["required"] == ["A", "B", "C"]
    assert s["properties"]["preliminary_answer"]["enum"] == ["A", "B", "C"]
    assert len(task.prompt_hash()) == 12


def test_every_contexts_config_validates():
    from medforge.config.base import load_config
    from medforge.contexts.config import ContextsConfig

    root = Path(__file__).parents[3]
    for path in sorted((root / "configs" / "contexts").glob("*.yaml")):
        cfg = ContextsConfig.model_validate(
            {**__import__("yaml").safe_load(path.read_text()),
             "engine": {**__import__("yaml").safe_load(path.read_text())["engine"],
                         "model": "org/model"}})  # local tiny folder may not be built here
        assert cfg.output.chunk_rows >= 1
    with pytest.raises(Exception, match="unknown key"):
        load_config(ContextsConfig, root / "configs" / "contexts" / "openai_api.yaml", ["output.bogus=1"])


def test_structured_requires_json():
    from pydantic import ValidationError

    from medforge.contexts.config import ContextGenerationConfig

    with pytest.raises(ValidationError, match="structured_output=true needs output_format=json"):
        ContextGenerationConfig(output_format="text", structured_output=True)


def test_object_store_budget_must_fit_the_local_store():
    from pydantic import ValidationError

    from medforge.contexts.config import ContextsConfig

    base = {"engine": {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m"},
            "input": {"path": "in.jsonl"}, "output": {"dir": "out"}}
    cfg = ContextsConfig.model_validate(base)
    assert cfg.object_store_budget_mib <= cfg.ray_object_store_mib
    with pytest.raises(ValidationError, match="exceeds ray_object_store_mib"):
        ContextsConfig.model_validate({**base, "object_store_budget_mib": 4096, "ray_object_store_mib": 1024})
    # joining a cluster (or Ray's default store): only the budget applies
    assert ContextsConfig.model_validate({**base, "object_store_budget_mib": 4096, "ray_object_store_mib": None})
