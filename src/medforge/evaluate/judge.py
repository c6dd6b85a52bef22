"""The pairwise judge: prompt (AlpacaFarm-style "Output (a)" / "Output (b)"), schema and verdict parsing.

Pure functions, no engine: :func:`judge_messages` renders one request, :func:`parse_verdict`
turns whatever the judge wrote into ``"a"``, ``"b"``, ``"tie"`` or ``None`` (with a reason).
The prompt is a template file next to this module; its hash goes into every verdict record
and into the cache key, so changing the prompt never reuses an old verdict.

Orders: every pair is judged twice, ``model_first`` (the model's answer is Output (a)) and
``reference_first``; :func:`model_outcome` maps a verdict back to the model's win/tie/loss.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

import jinja2

SYSTEM_TEMPLATE = "judge_system.jinja"
USER_TEMPLATE = "judge_pairwise.jinja"
ORDERS: tuple[str, ...] = ("model_first", "reference_first")
VERDICTS = ("Output (a)", "Output (b)", "tie")
# Structured output where the engine supports it (vLLM guided decoding, OpenAI json_schema).
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"verdict": {"type": "string", "enum": list(VERDICTS)}},
    "required": ["verdict"],
    "additionalProperties": False,
}

Verdict = Literal["a", "b", "tie"]


@lru_cache(maxsize=None)
def _source(name: str) -> str:
    return (resources.files("medforge.evaluate") / "templates" / name).read_text()


@lru_cache(maxsize=None)
def prompt_hash() -> str:
    """First 12 hex chars of the sha256 of both judge templates (recorded with every verdict)."""
    return hashlib.sha256((_source(SYSTEM_TEMPLATE) + "\0" + _source(USER_TEMPLATE)).encode()).hexdigest()[:12]


def _render(name: str, **ctx: Any) -> str:
    return jinja2.Template(_source(name), undefined=jinja2.StrictUndefined, autoescape=False).render(**ctx).strip()


def judge_messages(instruction: str, input_text: str, output_a: str, output_b: str, structured: bool) -> list[dict[str, str]]:
    """Chat messages asking which of two outputs better answers ``instruction`` (+ ``input_text``)."""
    user = _render(USER_TEMPLATE, instruction=instruction, input=input_text.strip(), output_a=output_a,
                   output_b=output_b, structured=structured)
    return [{"role": "system", "content": _render(SYSTEM_TEMPLATE)}, {"role": "user", "content": user}]


def outputs_for_order(order: str, model_answer: str, reference: str) -> tuple[str, str]:
    """``(output_a, output_b)`` for an order."""
    if order == "model_first":
        return model_answer, reference
    if order == "reference_first":
        return reference, model_answer
    raise ValueError(f"unknown order {order!r}; use one of {ORDERS}")


def model_outcome(order: str, verdict: Verdict | None) -> str | None:
    """``"win"``, ``"tie"``, ``"loss"`` for the model under test, or ``None`` for an unparsed verdict."""
    if verdict is None:
        return None
    if verdict == "tie":
        return "tie"
    model_slot = "a" if order == "model_first" else "b"
    return "win" if verdict == model_slot else "loss"


OUTCOME_SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0}

_REFUSAL = re.compile(
    r"\b(i\s*(?:can(?:no|')t|am (?:not able|unable)|won't|will not|must decline)|i'm (?:not able|unable|sorry)|"
    r"as an ai\b|i (?:do not|don't) feel comfortable|cannot (?:provide|help|assist|comply))",
    re.I,
)
# "Output (a)", "output a", "(a)", "Output A" ... captured as the letter
_OUTPUT = re.compile(r"\boutput\s*\(?\s*([ab])\s*\)?(?![a-z])|\(\s*([ab])\s*\)", re.I)
_TIE = re.compile(r"\b(tie|tied|draw|equally (?:good|bad|helpful|accurate|valid)|both (?:are )?equally|neither is better|no clear winner)\b", re.I)
_BETTER = re.compile(r"\boutput\s*\(?\s*([ab])\s*\)?\s+(?:is|was|seems|appears)\s+(?:clearly\s+|slightly\s+|much\s+)?(?:better|superior|preferable|more accurate|the better)", re.I)
_PREFER = re.compile(r"\b(?:prefer|choose|select|pick|verdict\s*:?|answer\s*:?|winner\s*:?|better output is)\s*(?:is\s*)?:?\s*\**\s*(?:output\s*)?\(?\s*([ab])\s*\)?(?![a-z])", re.I)


def parse_verdict(text: str, finish_reason: str = "") -> tuple[Verdict | None, str]:
    """A judge's reply -> ``(verdict, reason)``; ``verdict`` is ``None`` when it cannot be trusted.

    Accepted, in this order: JSON ``{"verdict": ...}`` (structured output); a reply that names
    exactly one output ("Output (b)", "(a)", "output b"); an explicit preference sentence in a
    longer reply ("Output (a) is better", "I prefer (b)", "Verdict: a"); a tie ("tie", "both
    are equally good"). A reply that names both outputs without a preference, hedges between a
    tie and an output, refuses, or is empty is ``None``, with the reason (``empty``, ``refused``,
    ``ambiguous``, ``unrecognised``). A reply the engine cut at the token limit (``finish_reason``
    ``"length"``) is ``None`` too, whatever it says so far: the verdict may have been about to change.
    """
    if finish_reason == "length":
        return None, "truncated: the reply was cut at the token limit"
    raw = (text or "").strip()
    if not raw:
        return None, "empty reply"
    # Structured output (possibly inside a code fence or after stray prose)
    m = re.search(r"\{.*\}", raw, re.S)
    if m:
        try:
            obj = json.loads(m.group(0))
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("verdict"), str):
            v, why = _from_phrase(obj["verdict"])
            if v is not None:
                return v, "json"
            return None, f"json verdict {obj['verdict']!r} {why}"
    v, why = _from_phrase(raw)
    if v is not None:
        return v, why
    if _REFUSAL.search(raw):
        return None, "refused"
    return None, why


def _from_phrase(text: str) -> tuple[Verdict | None, str]:
    t = text.strip().strip("*`\"'. \n").lower()
    if t in ("a", "b"):
        return t, "letter"  # type: ignore[return-value]
    if t in ("tie", "draw"):
        return "tie", "tie"
    letters = {(a or b).lower() for a, b in _OUTPUT.findall(text)}
    tie = bool(_TIE.search(text))
    if len(letters) == 1 and not tie:
        return letters.pop(), "named one output"  # type: ignore[return-value]
    if tie and not letters:
        return "tie", "tie"
    # Longer replies: an explicit preference decides, if it is unique
    prefs = {x.lower() for x in _BETTER.findall(text)} | {x.lower() for x in _PREFER.findall(text)}
    if len(prefs) == 1:
        return prefs.pop(), "stated preference"  # type: ignore[return-value]
    if tie and letters == {"a", "b"} and not prefs:
        return "tie", "tie between both outputs"
    if letters or prefs:
        return None, "ambiguous: names both outputs (or an output and a tie) without one preference"
    if tie:
        return "tie", "tie"
    return None, "unrecognised: names neither output nor a tie"
