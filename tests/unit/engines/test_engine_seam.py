"""The engine seam: one object per engine kind, and jobs that never ask which kind they hold."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from medforge.config.base import ConfigError
from medforge.engines.config import OpenAITeacherConfig, ScriptedTeacherConfig, VLLMTeacherConfig
from medforge.engines.engine import APIEngine, ScriptedEngine, VLLMEngine, engine_for

SRC = Path(__file__).resolve().parents[3] / "src" / "medforge"
ENGINE_CONFIGS = {"VLLMTeacherConfig", "OpenAITeacherConfig", "ScriptedTeacherConfig", "ServedContextLLM"}
ENGINE_KINDS = {"vllm", "openai", "scripted", "serve"}


def _api(**kw) -> OpenAITeacherConfig:
    return OpenAITeacherConfig(base_url="http://127.0.0.1:9/v1", model="m", **kw)


def test_each_config_kind_has_its_engine():
    assert type(engine_for(VLLMTeacherConfig(model="org/m"))) is VLLMEngine
    assert type(engine_for(_api())) is APIEngine
    assert type(engine_for(ScriptedTeacherConfig())) is ScriptedEngine
    with pytest.raises(TypeError, match="no engine kind"):
        engine_for(object())


def test_the_served_context_llm_gets_the_handle_engine():
    from medforge.serve.context_llm import ServedContextLLM, ServeHandleEngine

    engine = engine_for(ServedContextLLM(model="m"))
    assert type(engine) is ServeHandleEngine
    engine.check_endpoint()  # nothing to dial
    with pytest.raises(TypeError, match="inside Serve only"):
        engine.chat(None, None)


def test_structured_output_and_cache_identity_per_kind():
    vllm, api = engine_for(VLLMTeacherConfig(model="org/m")), engine_for(_api(structured_output=False))
    assert vllm.structured(True) and not vllm.structured(False)
    assert not api.structured(True) and engine_for(_api()).structured(True)
    assert engine_for(ScriptedTeacherConfig()).structured(True)
    assert vllm.identity == "vllm:org/m" and api.identity == "openai:m@http://127.0.0.1:9/v1"
    assert engine_for(ScriptedTeacherConfig(model="s")).identity == "scripted:s"


def test_raw_prompts_and_schema_streams():
    vllm = engine_for(VLLMTeacherConfig(model="org/m"))
    assert vllm.for_raw_prompt().cfg.chat_template_stage is False and vllm.cfg.chat_template_stage is True
    assert vllm.one_schema_per_stream and not engine_for(_api()).one_schema_per_stream
    assert not engine_for(_api()).takes_raw_prompt and engine_for(ScriptedTeacherConfig()).takes_raw_prompt


def test_auto_placement_with_cluster_storage_is_a_config_problem_of_vllm_only():
    assert engine_for(VLLMTeacherConfig(model="org/m")).config_problems({"output.dir": "s3://b/run"})
    assert engine_for(VLLMTeacherConfig(model="org/m")).config_problems({"output.dir": "runs/x"}) == []
    assert engine_for(_api()).config_problems({"output.dir": "s3://b/run"}) == []


def test_preflight_reports_the_engines_missing_module_with_the_demand(monkeypatch):
    import medforge.engines.engine as E

    monkeypatch.setattr(E, "preflight", lambda stage, demands, storage: (_ for _ in ()).throw(
        ConfigError(f"{stage} preflight", [f"demand {len(demands)}"])))
    engine = engine_for(VLLMTeacherConfig(model="org/m", placement="gpu"))
    monkeypatch.setattr(type(engine), "modules", lambda self: {"medforge_no_such_module": "pip install it"})
    with pytest.raises(ConfigError) as exc:
        engine.preflight("generate", {})
    assert exc.value.problems[0] == "demand 1" and "medforge_no_such_module" in exc.value.problems[1]
    seen = []
    monkeypatch.setattr(E, "preflight", lambda stage, demands, storage: seen.append(demands))
    engine_for(ScriptedTeacherConfig()).preflight("generate", {})
    assert seen == [[]]  # the scripted engine declares nothing


def test_the_api_engine_holds_the_cluster_wide_limiter(monkeypatch):
    import medforge.engines.engine as E

    made = []
    monkeypatch.setattr(E, "get_limiter", lambda cfg: made.append(cfg.name) or object())
    engine = engine_for(_api(check_endpoint=False, rate_limit={"requests_per_minute": 5}))
    engine.start()
    engine.start()
    assert made == ["medforge-rate-limiter"] and engine._limiter is not None
    engine_for(_api(check_endpoint=False)).start()
    assert len(made) == 1  # no rate_limit: no limiter


def _kind_branches(path: Path) -> list[str]:
    """``isinstance(x, <engine config class>)`` and ``x.kind == "<engine kind>"`` (or ``getattr(x, "kind")``) in one file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and len(node.args) == 2:
            names = {n.id if isinstance(n, ast.Name) else getattr(n, "attr", "") for n in ast.walk(node.args[1])}
            if names & ENGINE_CONFIGS:
                found.append(f"{path.relative_to(SRC)}:{node.lineno}")
        left = node.left if isinstance(node, ast.Compare) else None
        kind_attr = (isinstance(left, ast.Attribute) and left.attr == "kind") or (
            isinstance(left, ast.Call) and getattr(left.func, "id", None) == "getattr"
            and any(isinstance(a, ast.Constant) and a.value == "kind" for a in left.args))
        if kind_attr:
            if any(isinstance(c, ast.Constant) and c.value in ENGINE_KINDS for c in node.comparators):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    return found


def test_no_engine_kind_branches_outside_engines():
    branches = [b for p in sorted(SRC.rglob("*.py")) if "engines" not in p.relative_to(SRC).parts
                for b in _kind_branches(p)]
    assert branches == [], "ask the engine (medforge.engines.engine), not its kind: " + ", ".join(branches)
