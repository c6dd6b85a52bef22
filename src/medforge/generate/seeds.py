"""Seed tasks: AlpaCare's ``med_seed.json`` format as it is, JSONL, or the set this package ships.

A seed row has ``instruction``, ``input`` (``<noinput>`` when empty), ``type``, ``topic``,
``view`` and ``difficulty`` (1-5). AlpaCare's type labels are not normalised ("Rewrites",
"USMLE Style Q&A", "Multiple Hop Reasoning", ...); :func:`normalize_type` maps them onto
:data:`TASK_TYPES`.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from medforge.datasets.alpaca import NO_INPUT
from medforge.io import jsonl_text_lines, lone_surrogate_problem

logger = logging.getLogger(__name__)

TASK_TYPES = (
    "Text Generation",
    "Open Q&A",
    "Chat",
    "Rewrite",
    "Summarization",
    "Classification",
    "USMLE-style Q&A",
    "Multiple-choice Q&A",
    "Single-hop Reasoning",
    "Multi-hop Reasoning",
)
SEED_FIELDS = ("instruction", "input", "type", "topic", "view", "difficulty")

# Ordered: the first pattern that matches a cleaned label wins.
_TYPE_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"usmle", "USMLE-style Q&A"),
    (r"multiple.?choice|\bmcq\b", "Multiple-choice Q&A"),
    (r"(multi|multiple).?hop", "Multi-hop Reasoning"),
    (r"single.?hop", "Single-hop Reasoning"),
    (r"summar", "Summarization"),
    (r"classif", "Classification"),
    (r"rewrit|paraphras", "Rewrite"),
    (r"\bchat|dialog|conversation", "Chat"),
    (r"generat|writ|draft|compos", "Text Generation"),
    (r"open|q ?a|question|qa", "Open Q&A"),
)


def normalize_type(label: str) -> str | None:
    """Map a free-form type label onto :data:`TASK_TYPES`; ``None`` if nothing fits."""
    clean = re.sub(r"[^a-z0-9]+", " ", str(label).lower().replace("&", "a")).strip()
    for pattern, canonical in _TYPE_PATTERNS:
        if re.search(pattern, clean):
            return canonical
    return None


@dataclass
class SeedSet:
    """Loaded seeds plus the rows that were quarantined, each with its reason."""

    seeds: list[dict[str, Any]]
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""


class SeedError(ValueError):
    """The seed file cannot be used at all (missing, empty, unreadable)."""


def _validate_seed(raw: Any, index: int) -> tuple[dict[str, Any] | None, str]:
    if not isinstance(raw, dict):
        return None, f"seed {index} is a {type(raw).__name__}, not an object"
    missing = [f for f in SEED_FIELDS if f not in raw or raw[f] is None or (isinstance(raw[f], str) and not raw[f].strip() and f != "input")]
    if missing:
        return None, f"seed {index} is missing field(s) {missing}; every seed needs {list(SEED_FIELDS)}"
    try:
        difficulty = int(str(raw["difficulty"]).strip())
    except ValueError:
        return None, f"seed {index} has difficulty {raw['difficulty']!r}; use an integer 1-5"
    if not 1 <= difficulty <= 5:
        return None, f"seed {index} has difficulty {difficulty}; use an integer 1-5"
    type_ = normalize_type(raw["type"])
    if type_ is None:
        return None, f"seed {index} has unknown type {raw['type']!r}; use one of {list(TASK_TYPES)}"
    text_input = str(raw["input"]).strip() or NO_INPUT
    seed = {
        "id": str(raw.get("id") or f"seed-{index:04d}"),
        "instruction": str(raw["instruction"]).strip(),
        "input": text_input,
        "type": type_,
        "type_raw": str(raw["type"]),
        "topic": str(raw["topic"]).strip(),
        "view": str(raw["view"]).strip(),
        "difficulty": difficulty,
    }
    for key, value in seed.items():
        problem = lone_surrogate_problem(value) if isinstance(value, str) else None
        if problem:
            return None, f"seed {index} field {key} {problem}"
    return seed, ""


def _read_rows(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise SeedError(f"seed file {path} is empty; give a JSON list or JSONL of seed tasks with {list(SEED_FIELDS)}")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SeedError(f"seed file {path} is not valid JSON ({exc}); fix the file or give JSONL") from None
        return rows
    rows = []
    for lineno, line in enumerate(jsonl_text_lines(text), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            rows.append({"__bad_line__": lineno, "__error__": str(exc)})
    return rows


def load_seeds(path: str | Path | None = None) -> SeedSet:
    """Load seeds from ``path`` (AlpaCare JSON list or JSONL); ``None`` loads the packaged set.

    Bad rows are quarantined with a reason instead of failing the load.

    Raises:
        SeedError: when the file is missing, empty or holds no usable seed.
    """
    if path is None:
        ref = resources.files("medforge.generate") / "data" / "default_seeds.jsonl"
        source, rows = "medforge:default_seeds.jsonl", [json.loads(line) for line in jsonl_text_lines(ref.read_text()) if line.strip()]
    else:
        p = Path(path)
        if not p.is_file():
            raise SeedError(
                f"seed file {p} does not exist; pass seeds.path pointing at AlpaCare's med_seed.json "
                "or a JSONL file, or leave it empty to use medforge's built-in seeds"
            )
        source, rows = str(p), _read_rows(p)
    if not isinstance(rows, list):
        raise SeedError(f"seed file {source} must hold a JSON list of seed objects")
    seeds, quarantined = [], []
    for i, raw in enumerate(rows):
        if isinstance(raw, dict) and "__bad_line__" in raw:
            quarantined.append({"row": raw, "reason": f"line {raw['__bad_line__']} is not valid JSON: {raw['__error__']}"})
            continue
        seed, reason = _validate_seed(raw, i)
        if seed is None:
            quarantined.append({"row": raw, "reason": reason})
        else:
            seeds.append(seed)
    for q in quarantined:
        logger.warning("quarantined seed: %s", q["reason"])
    if not seeds:
        raise SeedError(f"seed file {source} holds no usable seed ({len(quarantined)} quarantined); see the reasons above")
    ids = [s["id"] for s in seeds]
    if len(set(ids)) != len(ids):
        raise SeedError(f"seed file {source} has duplicate ids; give each seed a unique 'id' or drop the field")
    logger.info("loaded %d seeds from %s (%d quarantined)", len(seeds), source, len(quarantined))
    return SeedSet(seeds=seeds, quarantined=quarantined, source=source)
