"""The scripted engine's replies: a pure function of the request (no Ray, no model)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from medforge.contexts import task as context_task
from medforge.generate import instruction_task
from medforge.generate.response_checks import ResponseCheckConfig, check_response
from medforge.engines.config import SamplingConfig, ScriptedTeacherConfig
from medforge.engines.reply import OUTPUT_COLUMNS
from medforge.engines.scripted import _ScriptedUDF, schema_instance, scripted_reply
from medforge.evaluate import judge as J

MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "QUESTION-i3: what helps a cough?"}]


def _cfg(**kw) -> ScriptedTeacherConfig:
    return ScriptedTeacherConfig(**kw)


def test_same_request_same_reply_and_the_seed_changes_it():
    s = SamplingConfig(max_tokens=300)
    a, b = scripted_reply(_cfg(), s, MSGS, 7), scripted_reply(_cfg(), s, MSGS, 7)
    assert a == b and a["engine_error"] == "" and a["finish_reason"] == "stop"
    assert scripted_reply(_cfg(), s, MSGS, 8)["generated_text"] != a["generated_text"]
    assert a["num_generated_tokens"] == len(a["generated_text"].split())
    assert a["num_input_tokens"] == len("be brief QUESTION-i3: what helps a cough?".split())


def test_the_first_matching_rule_answers_with_its_groups_or_its_error():
    cfg = _cfg(rules=[{"match": r"QUESTION-(i\d)", "text": r"ANSWER-\1 rest"},
                      {"match": "cough", "error": "401 Unauthorized"}])
    assert scripted_reply(cfg, SamplingConfig(), MSGS, 0)["generated_text"] == "ANSWER-i3 rest"
    cfg = _cfg(rules=[{"match": "cough", "error": "401 Unauthorized"}, {"match": "QUESTION", "text": "x"}])
    r = scripted_reply(cfg, SamplingConfig(), MSGS, 0)
    assert r == {"generated_text": "", "num_input_tokens": 0, "num_generated_tokens": 0, "finish_reason": "",
                 "engine_error": "401 Unauthorized"}
    # a rule with neither text nor error gives the default reply
    cfg = _cfg(rules=[{"match": "cough"}, {"match": "QUESTION", "text": "never"}])
    assert scripted_reply(cfg, SamplingConfig(), MSGS, 0) == scripted_reply(_cfg(), SamplingConfig(), MSGS, 0)


def test_a_reply_over_max_tokens_is_cut_with_finish_reason_length():
    cfg = _cfg(rules=[{"match": ".", "text": "one two three four five"}])
    r = scripted_reply(cfg, SamplingConfig(max_tokens=3), MSGS, 0)
    assert r["generated_text"] == "one two three" and r["finish_reason"] == "length" and r["num_generated_tokens"] == 3


def test_default_replies_pass_the_jobs_parsers_and_reply_gates():
    s = SamplingConfig(max_tokens=3000)
    schema = instruction_task.task_json_schema(5, 500, 1600)
    text = scripted_reply(_cfg(), s, MSGS, 1, schema)["generated_text"]
    tasks, reasons = instruction_task.format_output(text, True)
    assert len(tasks) == 5 and reasons == []
    letters = ["A", "B", "C", "D"]
    parsed, reason = context_task.format_output(
        scripted_reply(_cfg(), s, MSGS, 1, context_task.json_schema(letters))["generated_text"], letters)
    assert parsed is not None and set(parsed["option_contexts"]) == set(letters), reason
    verdict, _ = J.parse_verdict(scripted_reply(_cfg(), s, MSGS, 1, J.VERDICT_SCHEMA)["generated_text"])
    assert verdict in ("a", "b", "tie")
    prose = scripted_reply(_cfg(), s, MSGS, 1)["generated_text"]
    assert check_response(prose, ResponseCheckConfig(), instruction="what helps a cough?").ok


def test_schema_instances_keep_bounds_and_enums():
    import random

    spec = {"type": "object", "properties": {
        "n": {"type": "integer", "minimum": 2, "maximum": 3}, "s": {"type": "string", "maxLength": 10, "minLength": 1},
        "e": {"type": "string", "enum": ["x", "y"]}, "a": {"type": "array", "items": {"type": "boolean"},
                                                          "minItems": 2, "maxItems": 2}}}
    for seed in range(20):
        v = schema_instance(spec, random.Random(seed))
        assert 2 <= v["n"] <= 3 and 1 <= len(v["s"]) <= 10 and v["e"] in ("x", "y") and len(v["a"]) == 2


def test_the_actor_udf_adds_exactly_the_reply_columns_and_honours_row_schemas():
    import numpy as np

    udf = _ScriptedUDF(_cfg(), SamplingConfig(), None)
    batch = {"id": np.array(["a", "b"]), "request_seed": np.array([1, 2]),
             "messages": np.array([MSGS, MSGS], dtype=object),
             "json_schema": np.array([json.dumps(J.VERDICT_SCHEMA), ""], dtype=object)}
    out = udf(batch)
    assert set(out) == {"id", "request_seed", "messages", *OUTPUT_COLUMNS}
    assert json.loads(out["generated_text"][0])["verdict"] in J.VERDICTS
    assert not out["generated_text"][1].startswith("{")
    assert out["num_generated_tokens"].dtype == np.int64


def test_bad_rules_are_config_errors():
    with pytest.raises(ValidationError, match="not a regular expression"):
        _cfg(rules=[{"match": "("}])
    with pytest.raises(ValidationError, match="text or an error"):
        _cfg(rules=[{"match": "x", "text": "a", "error": "b"}])
