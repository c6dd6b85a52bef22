"""Test sets and references for free-form evaluation.

Every loader returns items of one shape::

    {"id": str, "instruction": str, "input": str, "difficulty": str | None,
     "references": {reference_name: str}}

Formats:

* ``medinstruct``: AlpaCare's MedInstruct-test (``id``, ``instruction``, ``difficulty`` "1".."5",
  and four reference answers ``gpt-4-answer``, ``claude-2``, ``gpt-3.5-turbo-answer``,
  ``text-davinci-003-answer``).
* ``alpacare``: AlpaCare's reference files (``instruction``, ``input``, ``output``; no id: the
  line index is the id), e.g. ``iCliniq_gpt-4_reference.jsonl``; ``output`` is the reference.
* ``generic``: any JSONL with ``instruction``, optional ``input``, ``id`` and ``difficulty``,
  and one or more reference fields (``reference`` by default).

Extra reference files (AlpaCare format) are joined onto the items by ``id`` when they have one,
else by the (instruction, input) text. Problems that make the whole run meaningless (missing
fields, duplicate ids, an unreadable file) are raised together before any engine starts; an item
that lacks one reference is left out of that reference only and reported (``missing_reference``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medforge.config.base import ConfigError
from medforge.io import jsonl_text_lines

MEDINSTRUCT_REFERENCES = ("gpt-4-answer", "claude-2", "gpt-3.5-turbo-answer", "text-davinci-003-answer")
MAX_PROBLEMS = 8


def _read_rows(path: str | Path, field: str) -> tuple[list[dict[str, Any]], list[str]]:
    p = Path(path)
    if not p.is_file():
        return [], [f"{field} = {str(path)!r}: file not found; fix: point it at a JSONL file"]
    rows, problems = [], []
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return [], [f"{field} = {str(path)!r}: not UTF-8 ({exc.reason} at byte {exc.start}); fix: re-encode the file as UTF-8"]
    lines = jsonl_text_lines(text)
    if len(lines) == 1 and lines[0].lstrip().startswith("["):  # a JSON array instead of JSONL
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, list):
            if not all(isinstance(r, dict) for r in data):
                return [], [f"{field} = {str(path)!r}: every element of the JSON array must be an object"]
            return [{**r, "_line": i} for i, r in enumerate(data)], []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{field} = {str(path)!r}: line {i + 1} is not valid JSON ({exc.msg}); fix: repair or remove it")
            continue
        if not isinstance(rec, dict):
            problems.append(f"{field} = {str(path)!r}: line {i + 1} is not a JSON object")
            continue
        rec.setdefault("_line", i)
        rows.append(rec)
    if not rows and not problems:
        problems.append(f"{field} = {str(path)!r}: the file is empty; fix: point it at a non-empty JSONL")
    return rows, problems


def _text(rec: dict[str, Any], key: str) -> str | None:
    v = rec.get(key)
    if v is None:
        return None
    return v if isinstance(v, str) else str(v)


def load_test_set(path: str | Path, fmt: str, reference_fields: list[str] | None = None,
                  reference_name: str | None = None, field: str = "data.test_path") -> tuple[list[dict[str, Any]], list[str]]:
    """Items of a test file, and the problems that stop the run (empty list when fine).

    Args:
        path: JSONL (or a JSON array) file.
        fmt: ``medinstruct``, ``alpacare`` or ``generic``.
        reference_fields: which fields hold references (``medinstruct``: a subset of the four;
            ``generic``: default ``["reference"]``; ignored for ``alpacare``).
        reference_name: the reference's name for ``alpacare`` (default: the file stem).
    """
    rows, problems = _read_rows(path, field)
    if problems:
        return [], problems
    if fmt == "medinstruct":
        refs = list(reference_fields or MEDINSTRUCT_REFERENCES)
        need = ["id", "instruction"]
    elif fmt == "alpacare":
        refs = ["output"]
        need = ["instruction", "output"]
    elif fmt == "generic":
        refs = list(reference_fields or ["reference"])
        need = ["instruction"]
    else:
        return [], [f"data.format = {fmt!r}: unknown; fix: use medinstruct, alpacare or generic"]
    ref_names = [reference_name or Path(path).stem] if fmt == "alpacare" else refs
    items: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    dups: list[str] = []
    for rec in rows:
        line = rec.pop("_line")
        missing = [k for k in need if _text(rec, k) is None]
        if fmt == "alpacare" and not (_text(rec, "instruction") or _text(rec, "input")):
            missing.append("instruction or input (both empty)")
        if missing:
            problems.append(f"{field}: line {line + 1} lacks {missing} (format {fmt}); fix: add them, or choose the right data.format")
            continue
        rid = str(rec["id"]) if rec.get("id") is not None else str(line)
        if rid in seen:
            dups.append(rid)
        seen[rid] = line
        references = {}
        for name, key in zip(ref_names, refs, strict=True):
            val = _text(rec, key)
            if val is not None and val.strip():
                references[name] = val
        diff = rec.get("difficulty")
        items.append({"id": rid, "instruction": _text(rec, "instruction") or "", "input": _text(rec, "input") or "",
                      "difficulty": None if diff in (None, "") else str(diff), "references": references})
    if dups:
        problems.append(f"{field}: duplicate ids {sorted(set(dups))[:10]} ({len(dups)} repeats); fix: give every row a unique id "
                        "(verdicts and the judge cache are keyed by it)")
    if fmt != "alpacare" and items and not any(i["references"] for i in items):
        problems.append(f"{field}: no row has any of the reference fields {refs}; fix: set data.reference_fields to the fields that hold them")
    return items, problems[:MAX_PROBLEMS] + ([f"... and {len(problems) - MAX_PROBLEMS} more"] if len(problems) > MAX_PROBLEMS else [])


def _join_key(rec: dict[str, Any]) -> str:
    return json.dumps([(rec.get("instruction") or "").strip(), (rec.get("input") or "").strip()])


def attach_reference_file(items: list[dict[str, Any]], path: str | Path, name: str, field: str) -> list[str]:
    """Add an AlpaCare-format reference file (``instruction``/``input``/``output``) to ``items`` in place.

    Joined by ``id`` when the file has ids, else by the (instruction, input) text. Returns the
    problems that stop the run (an unreadable file, rows without ``output``, or a file that
    matches no item at all); unmatched single items are reported later as missing references.
    """
    rows, problems = _read_rows(path, field)
    if problems:
        return problems
    by_id = all(r.get("id") is not None for r in rows)
    index: dict[str, str] = {}
    for r in rows:
        if _text(r, "output") is None:
            problems.append(f"{field}: line {r['_line'] + 1} has no 'output'; fix: an AlpaCare reference file holds instruction/input/output")
            continue
        index[str(r["id"]) if by_id else _join_key(r)] = r["output"]
    matched = 0
    for item in items:
        ref = index.get(item["id"] if by_id else _join_key(item))
        if ref is not None and ref.strip():
            item["references"][name] = ref
            matched += 1
    if items and not matched:
        how = "id" if by_id else "instruction/input text"
        problems.append(f"{field} = {str(path)!r}: no row matches any test item by {how}; fix: use the reference file made for this test set")
    return problems[:MAX_PROBLEMS]


def load_items(test_path: str, fmt: str, reference_fields: list[str] | None, reference_files: dict[str, str],
               max_items: int | None = None) -> list[dict[str, Any]]:
    """Test items with every configured reference; raises :class:`ConfigError` with all problems."""
    items, problems = load_test_set(test_path, fmt, reference_fields)
    for name, path in reference_files.items():
        problems += attach_reference_file(items, path, name, f"data.reference_files.{name}")
    if problems:
        raise ConfigError("data", problems)
    return items[:max_items] if max_items else items


def reference_names(items: list[dict[str, Any]]) -> list[str]:
    """Every reference name seen, in first-seen order."""
    names: dict[str, None] = {}
    for it in items:
        for k in it["references"]:
            names.setdefault(k, None)
    return list(names)
