"""The scripted engine: replies by rule, a pure function of the request, and no model.

:func:`scripted_reply` decides one request: the first rule of the config whose ``match``
finds the request's text gives the reply (its ``text``, with the match's groups) or the
failure (its ``error``). A request no rule matches gets the default reply, drawn from a hash
of the request (messages, seed, schema):

* with a JSON schema: an instance of it (objects, arrays, enums, bounded strings and numbers),
  with short English sentences for strings, so the jobs' parsers and gates see real JSON;
* without one: two to four English sentences about a patient's care.

Token counts are whitespace words; a reply longer than ``sampling.max_tokens`` words is cut
there with ``finish_reason: length``, as an engine cuts it. :func:`scripted_chat` runs it in a
pool of Ray Data actors, like the API engine, so the jobs' streaming, ordering and resume
logic run exactly as with a real engine.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from typing import Any

import numpy as np

from medforge.engines.config import SamplingConfig, ScriptedTeacherConfig
from medforge.engines.reply import OUTPUT_COLUMNS, TEXT_COLUMNS, Reply, failed_reply

#: logical CPUs one scripted actor holds (it does almost nothing)
SCRIPTED_ACTOR_CPUS = 0.1

_SUBJECTS = ("the patient", "an older adult", "the child", "a pregnant woman", "the care team", "the nurse",
             "a family caregiver", "the pharmacist", "a young athlete", "the primary care doctor", "a new parent",
             "the surgeon")
_VERBS = ("should monitor", "may notice", "can reduce", "needs to review", "could discuss", "ought to record",
          "will explain", "must check", "might improve", "can ask about", "should avoid", "may track")
_OBJECTS = ("blood pressure", "blood glucose levels", "the medication dose", "signs of infection", "daily fluid intake",
            "sleep quality", "joint pain", "the wound dressing", "heart rate changes", "allergy symptoms",
            "kidney function", "breathing difficulty", "vaccination records", "dietary fiber", "skin rashes")
_TAILS = ("every morning", "after each meal", "during the first week", "before surgery", "at the next visit",
          "while taking antibiotics", "after exercise", "over the winter months", "at home", "before bedtime",
          "during recovery", "with the help of a specialist")


def request_text(messages: list[dict[str, Any]]) -> str:
    """What the rules search: the messages' contents, joined by newlines."""
    return "\n".join(str(m.get("content", "")) for m in messages)


def _rng(messages: list[dict[str, Any]], seed: int, schema: dict[str, Any] | None) -> random.Random:
    key = json.dumps([messages, int(seed), schema], sort_keys=True, default=str)
    return random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))


def sentence(rng: random.Random) -> str:
    text = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TAILS)}."
    return text[0].upper() + text[1:]


def _string(rng: random.Random, spec: dict[str, Any]) -> str:
    lo, hi = int(spec.get("minLength", 0)), spec.get("maxLength")
    text = " ".join(sentence(rng) for _ in range(rng.randint(1, 2)))
    if hi is not None and len(text) > int(hi):
        text = text[: int(hi)].rstrip() or text[: int(hi)]
    return text if len(text) >= lo else text + "x" * (lo - len(text))


def schema_instance(spec: dict[str, Any], rng: random.Random) -> Any:
    """A value that satisfies ``spec`` (the JSON-schema subset the jobs' schemas use)."""
    if "enum" in spec:
        return rng.choice(list(spec["enum"]))
    kind = spec.get("type")
    if kind == "object":
        return {name: schema_instance(sub, rng) for name, sub in (spec.get("properties") or {}).items()}
    if kind == "array":
        lo = int(spec.get("minItems", 1))
        hi = int(spec.get("maxItems", max(lo, 3)))
        return [schema_instance(spec.get("items") or {"type": "string"}, rng) for _ in range(rng.randint(lo, hi))]
    if kind == "integer":
        return rng.randint(int(spec.get("minimum", 0)), int(spec.get("maximum", 100)))
    if kind == "number":
        return round(rng.uniform(float(spec.get("minimum", 0.0)), float(spec.get("maximum", 1.0))), 3)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _string(rng, spec)


def _reply(text: str, messages: list[dict[str, Any]], max_tokens: int, finish_reason: str) -> Reply:
    words = text.split()
    if len(words) > max_tokens:
        text, finish_reason = " ".join(words[:max_tokens]), "length"
    return Reply(generated_text=text, num_input_tokens=len(request_text(messages).split()),
                 num_generated_tokens=min(len(words), max_tokens), finish_reason=finish_reason, engine_error="")


def scripted_reply(cfg: ScriptedTeacherConfig, sampling: SamplingConfig, messages: list[dict[str, Any]], seed: int,
                   json_schema: dict[str, Any] | None = None) -> Reply:
    """The reply to one request: a pure function of its arguments."""
    text = request_text(messages)
    for rule in cfg.rules:
        m = re.search(rule.match, text, re.DOTALL)
        if m is None:
            continue
        if rule.error is not None:
            return failed_reply(rule.error)
        if rule.text is not None:
            return _reply(m.expand(rule.text), messages, sampling.max_tokens, rule.finish_reason)
        break
    rng = _rng(messages, seed, json_schema)
    if json_schema:
        return _reply(json.dumps(schema_instance(json_schema, rng)), messages, sampling.max_tokens, "stop")
    return _reply(" ".join(sentence(rng) for _ in range(rng.randint(2, 4))), messages, sampling.max_tokens, "stop")


class _ScriptedUDF:
    """Ray Data actor UDF: answers each row of a batch by :func:`scripted_reply`."""

    def __init__(self, cfg: ScriptedTeacherConfig, sampling: SamplingConfig, json_schema: dict[str, Any] | None):
        self.cfg, self.sampling, self.json_schema = cfg, sampling, json_schema

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        replies = []
        n = len(batch["request_seed"])
        if self.cfg.latency_s:
            time.sleep(self.cfg.latency_s * n)
        for i in range(n):
            row_schema = batch["json_schema"][i] if "json_schema" in batch else ""
            schema = json.loads(row_schema) if row_schema else self.json_schema
            messages = [dict(m) for m in batch["messages"][i]]
            replies.append(scripted_reply(self.cfg, self.sampling, messages, int(batch["request_seed"][i]), schema))
        out = {k: v for k, v in batch.items() if k != "json_schema"}
        for col in OUTPUT_COLUMNS:
            out[col] = np.array([r[col] for r in replies], dtype=object if col in TEXT_COLUMNS else np.int64)
        return out


def scripted_chat(ds, cfg: ScriptedTeacherConfig, sampling: SamplingConfig, json_schema: dict[str, Any] | None):
    """The scripted fan-out: a pool of actors over ``ds``, as the API engine's."""
    return ds.map_batches(
        _ScriptedUDF,
        fn_constructor_kwargs={"cfg": cfg, "sampling": sampling, "json_schema": json_schema},
        batch_size=cfg.batch_size,
        concurrency=tuple(cfg.concurrency),
        num_cpus=SCRIPTED_ACTOR_CPUS,
        batch_format="numpy",
    )
