"""Cheap per-task filters applied before the novelty filter (Alpaca / AlpaCare heuristics).

Each filter is a pure function ``task -> reason | None``; :func:`first_rejection` runs them in
order. The reason strings double as the rejection-count keys shown in progress.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from medforge.config.base import MedforgeModel
from medforge.generate.response_task import MC_TYPES, option_letters
from medforge.datasets.alpaca import NO_INPUT

# Tasks a text-only model cannot do (Alpaca's list, minus nothing medical text needs).
DEFAULT_DENYLIST = (
    "image", "images", "graph", "graphs", "picture", "pictures", "photo", "photos", "file", "files",
    "map", "maps", "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
    "attached", "attachment", "url", "link", "website", "spreadsheet", "chart",
)


class TaskFilterConfig(MedforgeModel):
    """Length bounds and the denylist applied to generated tasks."""

    min_instruction_words: int = Field(3, ge=0, description="Reject instructions with this many words or fewer.")
    max_instruction_words: int = Field(150, ge=1, description="Reject instructions longer than this (words).")
    max_input_words: int = Field(400, ge=1, description="Reject inputs longer than this (words); the prompt asks for 50-200.")
    denylist: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DENYLIST),
        description="Words/phrases (whole-word, case-insensitive) that mark a task a text model cannot do.",
    )
    novelty_threshold: float = Field(
        0.7, ge=0.0, le=1.0, description="ROUGE-L F1 above this against any kept instruction rejects (0.7 as AlpaCare)."
    )
    task_checks: bool = Field(
        True,
        description="Type-aware checks beyond AlpaCare's rules: an instruction is an English sentence, not code "
        "or JSON debris; an input is not a fragment of the reply's syntax; a multiple-choice task lists its options.",
    )
    novelty_actor: bool = Field(
        True, description="Hold the novelty pool in a Ray actor (shared, off the driver); decisions are identical."
    )


# Pieces of a JSON reply or a chat template that end up inside a field when a model loses track.
_DEBRIS = re.compile(r'"\s*:|[{}\[\]]|\\[nt"]|<\|?/?(?:im_start|im_end|end|user|assistant|system)\|?>|^\s*###|"(?:type|topic|view|'
                     r'difficulty|instruction|input|tasks)"', re.IGNORECASE | re.MULTILINE)
_CODE = re.compile(r"\b(?:def|import|return|function|var|const|select\s+\*|print\()\b|;\s*$|==|=>|&&|\|\|",
                   re.IGNORECASE | re.MULTILINE)
_WORD = re.compile(r"[A-Za-z]+(?:[-'][A-Za-z]+)*")


def _words(text: str) -> list[str]:
    return text.split()


def _denylist_regex(denylist: list[str]) -> re.Pattern[str] | None:
    if not denylist:
        return None
    alternatives = "|".join(re.escape(w) for w in sorted(denylist, key=len, reverse=True))
    return re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE)


class TaskFilters:
    """Compiled filters; :meth:`reject_reason` returns ``None`` for a task that passes."""

    def __init__(self, cfg: TaskFilterConfig):
        self.cfg = cfg
        self._deny = _denylist_regex(cfg.denylist)

    def reject_reason(self, task: dict[str, Any]) -> str | None:
        instruction = task["instruction"]
        n = len(_words(instruction))
        if n <= self.cfg.min_instruction_words:
            return "instruction_too_short"
        if n > self.cfg.max_instruction_words:
            return "instruction_too_long"
        if task["input"] != NO_INPUT and len(_words(task["input"])) > self.cfg.max_input_words:
            return "input_too_long"
        if self._deny is not None and self._deny.search(instruction):
            return "denylist"
        if instruction.lower().startswith("write a program"):
            return "denylist"
        first = instruction[0]
        if not (first.isascii() and first.isalnum()) and first not in "\"'(":
            return "bad_first_character"
        if self.cfg.task_checks:
            return task_check(task)
        return None


def task_check(task: dict[str, Any]) -> str | None:
    """Type-aware validation of one parsed task (pure); the reason, or ``None`` when it passes.

    AlpaCare's rule filters let such rows through; a weak teacher writes many of them.
    """
    instruction, text_input = task["instruction"], task["input"]
    if _DEBRIS.search(instruction) or _CODE.search(instruction):
        return "instruction_not_a_sentence"
    letters = [c for c in instruction if c.isalpha()]
    if sum(c.isascii() for c in letters) < 0.95 * len(letters):
        return "instruction_not_english"
    tokens = instruction.split()
    words = [t for t in tokens if _WORD.fullmatch(t.strip(".,;:?!()\"'"))]
    if len(words) < 0.7 * len(tokens) or len(letters) < 0.6 * len(instruction.replace(" ", "")):
        return "instruction_not_a_sentence"
    if text_input != NO_INPUT and _DEBRIS.search(text_input):
        return "input_reply_debris"
    if task.get("type") in MC_TYPES:
        letters_ = option_letters(task)
        if len(letters_) < 2 or letters_ != [chr(ord("A") + i) for i in range(len(letters_))]:
            return "mc_without_options"
    return None
