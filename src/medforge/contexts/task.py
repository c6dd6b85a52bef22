"""The context-generation task: two pure functions and a schema.

* :func:`format_input` turns the guarded payload (``keywords`` + ``options``, nothing else)
  into chat messages: a clinician system prompt, five few-shot demonstrations
  (``data/demonstrations.json``) and the query.
* :func:`format_output` turns the teacher's raw text into ``overall_context``,
  ``option_contexts`` (one per option) and ``preliminary_answer``, or a reason to
  quarantine. JSON is tried first (structured output), then a tolerant line parser, so a
  teacher that ignores the requested layout in small ways still parses.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from importlib import resources
from typing import Any

import jinja2

SYSTEM_TEMPLATE = "context_system.jinja"
USER_TEMPLATE = "context_user.jinja"
ASSISTANT_TEMPLATE = "context_assistant.jinja"
NO_RELATION = "No relationship can be found."

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("medforge.contexts", "templates"),
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    trim_blocks=True,
)


@lru_cache(maxsize=None)
def demonstrations() -> tuple[dict[str, Any], ...]:
    text = (resources.files("medforge.contexts") / "data" / "demonstrations.json").read_text(encoding="utf-8")
    return tuple(json.loads(text))


@lru_cache(maxsize=None)
def prompt_hash() -> str:
    """sha256 (12 hex) over the three templates and the demonstrations: recorded per row."""
    h = hashlib.sha256()
    for name in (SYSTEM_TEMPLATE, USER_TEMPLATE, ASSISTANT_TEMPLATE):
        h.update((resources.files("medforge.contexts") / "templates" / name).read_bytes())
    h.update((resources.files("medforge.contexts") / "data" / "demonstrations.json").read_bytes())
    return h.hexdigest()[:12]


def _render(name: str, **ctx: Any) -> str:
    return _ENV.get_template(name).render(**ctx).strip()


def _answer_text(demo: dict[str, Any], output_format: str) -> str:
    body = {k: demo[k] for k in ("overall_context", "option_contexts", "preliminary_answer")}
    return _render(ASSISTANT_TEMPLATE, output_format=output_format, as_json=json.dumps(body, ensure_ascii=False), **body)


@lru_cache(maxsize=16)
def _prefix(output_format: str, num_demonstrations: int) -> tuple[tuple[str, str], ...]:
    """System prompt + demonstrations: the same for every row, so rendered once."""
    msgs = [("system", _render(SYSTEM_TEMPLATE, output_format=output_format))]
    for demo in demonstrations()[:num_demonstrations]:
        msgs.append(("user", _render(USER_TEMPLATE, keywords=demo["keywords"], options=demo["options"])))
        msgs.append(("assistant", _answer_text(demo, output_format)))
    return tuple(msgs)


def format_input(keywords: list[str], options: dict[str, str], output_format: str = "json",
                 num_demonstrations: int = 5) -> list[dict[str, str]]:
    """Chat messages for one question. Only ``keywords`` and ``options`` go in."""
    msgs = [{"role": role, "content": content} for role, content in _prefix(output_format, num_demonstrations)]
    msgs.append({"role": "user", "content": _render(USER_TEMPLATE, keywords=list(keywords), options=dict(options))})
    return msgs


def json_schema(letters: list[str], max_overall_chars: int = 2000, max_option_chars: int = 600) -> dict[str, Any]:
    """Structured-output schema for one question (bounded strings keep weak models finite)."""
    return {
        "type": "object",
        "properties": {
            "overall_context": {"type": "string", "minLength": 1, "maxLength": max_overall_chars},
            "option_contexts": {
                "type": "object",
                "properties": {k: {"type": "string", "minLength": 1, "maxLength": max_option_chars} for k in letters},
                "required": list(letters),
                "additionalProperties": False,
            },
            "preliminary_answer": {"type": "string", "enum": list(letters)},
        },
        "required": ["overall_context", "option_contexts", "preliminary_answer"],
        "additionalProperties": False,
    }


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.I)
_OVERALL = re.compile(r"^\s*(?:\*\*)?\s*overall(?:\s+context)?\s*(?:\*\*)?\s*[:\-]\s*(?:\*\*)?\s*(.*)$", re.I)
_OPTION = re.compile(r"^\s*(?:[-*]\s*)?(?:\*\*)?\s*(?:option|answer|choice)?\s*\(?([A-J])\)?(?:\s+context)?\s*(?:\*\*)?\s*[:.)\-]\s*(?:\*\*)?\s*(.*)$", re.I)
_PRELIM = re.compile(r"^\s*(?:\*\*)?\s*preliminary\s+answer\s*(?:\*\*)?\s*[:\-]\s*(?:\*\*)?\s*\(?([A-J])\b", re.I)


def _parse_json(text: str) -> dict[str, Any] | None:
    t = _FENCE.sub("", text.strip())
    start, end = t.find("{"), t.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        obj = json.loads(t[start:end + 1])
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def _parse_lines(text: str) -> dict[str, Any]:
    overall: list[str] = []
    options: dict[str, list[str]] = {}
    answer = ""
    current: list[str] | None = None
    for line in text.splitlines():
        if m := _PRELIM.match(line):
            answer = m.group(1).upper()
            current = None
        elif m := _OVERALL.match(line):
            current = overall
            current.append(m.group(1))
        elif m := _OPTION.match(line):
            current = options.setdefault(m.group(1).upper(), [])
            current.append(m.group(2))
        elif current is not None and line.strip():
            current.append(line.strip())
    return {"overall_context": " ".join(x for x in overall if x).strip(),
            "option_contexts": {k: " ".join(x for x in v if x).strip() for k, v in options.items()},
            "preliminary_answer": answer}


def format_output(text: str, letters: list[str]) -> tuple[dict[str, Any] | None, str]:
    """Parse the teacher's reply for a question whose options are ``letters``.

    Returns:
        ``(columns, "")`` with ``overall_context`` (str), ``option_contexts`` (dict letter ->
        str, exactly ``letters``) and ``preliminary_answer`` (a letter), or ``(None, reason)``.
    """
    if not text or not text.strip():
        return None, "empty reply"
    obj = _parse_json(text)
    parsed = obj if obj is not None and "overall_context" in obj else _parse_lines(text)
    overall = parsed.get("overall_context")
    contexts = parsed.get("option_contexts")
    answer = parsed.get("preliminary_answer")
    if not isinstance(overall, str) or not overall.strip():
        return None, "no overall context"
    if not isinstance(contexts, dict):
        return None, "option_contexts is not a mapping"
    contexts = {str(k).strip().upper(): v for k, v in contexts.items()}
    missing = [k for k in letters if not isinstance(contexts.get(k), str) or not contexts[k].strip()]
    if missing:
        return None, f"no context for option(s) {', '.join(missing)}"
    extra = sorted(set(contexts) - set(letters))
    if extra:
        return None, f"context for unknown option(s) {', '.join(extra)}"
    answer = str(answer or "").strip().strip("()").upper()
    if answer not in letters:
        return None, f"preliminary answer {answer!r} is not one of {letters}"
    return {"overall_context": overall.strip(),
            "option_contexts": {k: contexts[k].strip() for k in letters},
            "preliminary_answer": answer}, ""
