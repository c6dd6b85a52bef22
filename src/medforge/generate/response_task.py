"""The response task: answer an accepted task as a medical expert (pure format/parse functions).

Multiple-choice tasks (and USMLE-style ones) must end with ``The answer is (X).``. Under
structured output the reply is constrained to ``{"explanation", "answer"}`` and rendered
into that form, so even a weak model yields a well-formed answer line.
"""

from __future__ import annotations

import json
import re
from typing import Any

from medforge.generate.prompts import render

SYSTEM_TEMPLATE = "response_system.jinja"
USER_TEMPLATE = "response_user.jinja"
MC_TYPES = {"Multiple-choice Q&A", "USMLE-style Q&A"}
_OPTION = re.compile(r"\(([A-J])\)")
ANSWER_LINE = re.compile(r"The answer is \(([A-J])\)\.?\s*$")


def option_letters(task: dict[str, Any]) -> list[str]:
    """Letters of the ``(A) ... (B) ...`` options in a task's input, in order, without repeats."""
    seen: list[str] = []
    for letter in _OPTION.findall(task.get("input", "")):
        if letter not in seen:
            seen.append(letter)
    return seen


def is_multiple_choice(task: dict[str, Any]) -> bool:
    return task.get("type") in MC_TYPES or len(option_letters(task)) >= 2


def mc_json_schema(task: dict[str, Any], max_explanation_chars: int = 1200) -> dict[str, Any]:
    letters = option_letters(task) or list("ABCDE")
    return {
        "type": "object",
        "properties": {
            "explanation": {"type": "string", "minLength": 1, "maxLength": max_explanation_chars},
            "answer": {"type": "string", "enum": letters},
        },
        "required": ["explanation", "answer"],
        "additionalProperties": False,
    }


def format_input(task: dict[str, Any]) -> list[dict[str, str]]:
    mc = is_multiple_choice(task)
    return [
        {"role": "system", "content": render(SYSTEM_TEMPLATE, multiple_choice=mc)},
        {"role": "user", "content": render(USER_TEMPLATE, instruction=task["instruction"], input=task["input"])},
    ]


def format_output(task: dict[str, Any], text: str, structured: bool) -> tuple[str | None, str]:
    """Return ``(response, "")`` or ``(None, reason)``."""
    text = (text or "").strip()
    if not text:
        return None, "empty response"
    if not is_multiple_choice(task):
        return text, ""
    if structured:
        try:
            obj = json.loads(text, strict=False)
            explanation, answer = str(obj["explanation"]).strip(), str(obj["answer"]).strip()
        except (json.JSONDecodeError, KeyError, TypeError):
            return None, "multiple-choice reply is not the requested JSON (truncated?)"
        if not re.fullmatch(r"[A-J]", answer):
            return None, f"multiple-choice answer {answer[:10]!r} is not an option letter"
        return f"{explanation}\n\nThe answer is ({answer}).", ""
    if not ANSWER_LINE.search(text):
        return None, "multiple-choice response does not end with 'The answer is (X).'"
    return text, ""
