"""The instruction-generation task: pure ``format_input`` / ``format_output`` functions.

Input columns: ``request_id`` (str), ``seed_ids`` (list[str]), ``examples`` (the seed rows
shown to the teacher). Output: a list of task dicts with ``type``, ``topic``, ``view``,
``difficulty``, ``instruction``, ``input``, plus error records for what could not be parsed.

Two output formats are understood:

* JSON ``{"tasks": [...]}``, produced under structured output (vLLM guided decoding or
  ``response_format``). A truncated array still yields its complete task objects.
* AlpaCare's ``###``-separated numbered text. Unlike AlpaCare's parser, a task's last field
  never swallows the next task's ``N. Type:`` line.
"""

from __future__ import annotations

import json
import re
from typing import Any

from medforge.generate.prompts import render
from medforge.generate.seeds import TASK_TYPES, normalize_type
from medforge.datasets.alpaca import NO_INPUT

TEMPLATE = "instruction_generation.jinja"
FIELDS = ("type", "topic", "view", "difficulty", "instruction", "input")


def task_json_schema(num_tasks: int, max_instruction_chars: int = 500, max_input_chars: int = 1600) -> dict[str, Any]:
    """JSON schema for one generation request (bounded strings keep even random models finite)."""
    item = {
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": list(TASK_TYPES)},
            "topic": {"type": "string", "minLength": 1, "maxLength": 60},
            "view": {"type": "string", "minLength": 1, "maxLength": 60},
            "difficulty": {"type": "integer", "minimum": 1, "maximum": 5},
            "instruction": {"type": "string", "minLength": 1, "maxLength": max_instruction_chars},
            "input": {"type": "string", "maxLength": max_input_chars},
        },
        "required": list(FIELDS),
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"tasks": {"type": "array", "items": item, "minItems": num_tasks, "maxItems": num_tasks}},
        "required": ["tasks"],
        "additionalProperties": False,
    }


def format_input(examples: list[dict[str, Any]], num_tasks: int, structured: bool) -> list[dict[str, str]]:
    """Chat messages asking for ``num_tasks`` new tasks, shown ``examples`` (seed rows)."""
    prompt = render(TEMPLATE, examples=examples, num_tasks=num_tasks, task_types=TASK_TYPES, structured=structured)
    return [{"role": "user", "content": prompt}]


def _coerce_task(raw: Any) -> tuple[dict[str, Any] | None, str]:
    """Validate one parsed task; returns (task, "") or (None, reason)."""
    if not isinstance(raw, dict):
        return None, f"task is a {type(raw).__name__}, not an object"
    missing = [f for f in FIELDS if f not in raw or raw[f] is None]
    if missing:
        return None, f"missing field(s) {missing}"
    type_ = normalize_type(str(raw["type"]))
    if type_ is None:
        return None, f"unknown task type {str(raw['type'])[:40]!r}"
    try:
        difficulty = int(str(raw["difficulty"]).strip().split()[0])
    except (ValueError, IndexError):
        return None, f"difficulty {str(raw['difficulty'])[:20]!r} is not an integer"
    if not 1 <= difficulty <= 5:
        return None, f"difficulty {difficulty} outside 1-5"
    instruction = str(raw["instruction"]).strip()
    if not instruction:
        return None, "empty instruction"
    text_input = str(raw["input"]).strip()
    if not text_input or text_input.lower() in {"<noinput>", "noinput", "<no input>", "none", "n/a"}:
        text_input = NO_INPUT
    return {
        "type": type_,
        "topic": str(raw["topic"]).strip(),
        "view": str(raw["view"]).strip(),
        "difficulty": difficulty,
        "instruction": instruction,
        "input": text_input,
    }, ""


def _salvage_json_tasks(text: str) -> tuple[list[Any], bool]:
    """Parse ``{"tasks": [...]}``; if truncated, return the complete objects before the cut."""
    try:
        # strict=False: models (random ones especially) emit raw control characters in strings
        obj = json.loads(text, strict=False)
        if isinstance(obj, dict) and isinstance(obj.get("tasks"), list):
            return obj["tasks"], True
        if isinstance(obj, list):
            return obj, True
        return [], False
    except json.JSONDecodeError:
        pass
    start = text.find("[")
    if start < 0:
        return [], False
    decoder = json.JSONDecoder(strict=False)
    items: list[Any] = []
    pos = start + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] != "{":
            break
        try:
            item, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            break
        items.append(item)
    return items, False


_FIELD_LINE = re.compile(r"^\s*(?:\d+\s*[.)]\s*)?(type|topic|view|difficulty|instruction|input)\s*:\s?(.*)$", re.IGNORECASE)


def parse_text_tasks(text: str) -> list[dict[str, str]]:
    """Parse AlpaCare's numbered ``###`` format into raw field dicts.

    A new task starts at ``###`` or at a ``Type:`` line, or when a field repeats, so a
    task's ``Input`` never runs on into the next task's fields (AlpaCare's parser leaks).
    """
    tasks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    field: str | None = None

    def flush() -> None:
        nonlocal current, field
        if current:
            tasks.append({k: v.strip() for k, v in current.items()})
        current, field = {}, None

    for line in text.splitlines():
        if line.strip().startswith("###"):
            flush()
            continue
        m = _FIELD_LINE.match(line)
        if m:
            name = m.group(1).lower()
            if name == "type" or name in current:
                flush()
            current[name] = m.group(2)
            field = name
        elif field is not None:
            current[field] += "\n" + line
    flush()
    return tasks


def format_output(text: str, structured: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """Parse a teacher reply into valid tasks and a list of rejection reasons.

    Never raises: a reply that yields nothing gives one reason saying why.
    """
    if not text or not text.strip():
        return [], ["empty output"]
    raw_tasks: list[Any]
    complete = True
    stripped = text.strip()
    if structured or stripped.startswith("{") or stripped.startswith("["):
        raw_tasks, complete = _salvage_json_tasks(stripped)
        if not raw_tasks:
            raw_tasks = parse_text_tasks(text)
    else:
        raw_tasks = parse_text_tasks(text)
    if not raw_tasks:
        return [], ["no task could be parsed (neither JSON nor ###-separated fields)"]
    tasks, reasons = [], []
    for raw in raw_tasks:
        task, reason = _coerce_task(raw)
        if task is None:
            reasons.append(reason)
        else:
            tasks.append(task)
    if not complete:
        reasons.append("output truncated (max_tokens reached?); kept the complete tasks before the cut")
    return tasks, reasons
