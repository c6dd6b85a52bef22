"""Multiple-choice medical QA readers: MedQA, MedMCQA, HEADQA and a generic JSONL.

Every reader turns one raw record into the same normalised row::

    {"id": str, "question": str, "options": {"A": str, "B": str, ...}, "answer": "B" | None}

or raises :class:`BadRow` with a reason that names the field and the fix. Readers are pure
functions of one record, so they are unit-testable and run the same inside Ray workers.

Format notes (the choices made here, also in docs/privacy.md):

* **MedQA** (jsonl as released by Jin et al.): ``question``, ``options`` (dict letter -> text),
  ``answer_idx`` (letter). ``answer`` (the option text) is used when ``answer_idx`` is absent.
* **MedMCQA**: ``question``, ``opa``..``opd``, ``cop``. The original release (the JSON files of
  the MedMCQA repository) stores ``cop`` 1-based (1..4); the Hugging Face ``datasets`` export
  stores it as a 0-based class label (0..3). A value of 1..3 is valid under both, so the base
  cannot be guessed row by row without silently mislabelling; it is a reader option
  (``cop_base``, default 1). Under ``cop_base=1`` a ``cop`` of 0 is quarantined with a hint
  to set ``cop_base=0``, and under ``cop_base=0`` a ``cop`` of 4 is quarantined likewise.
  Letters ``a``..``d`` are accepted as well.
* **HEADQA** (HF ``head_qa``): ``qtext``, ``answers`` (list of ``{aid, atext}``), ``ra``
  (the right ``aid``). Options are lettered A, B, ... in ``aid`` order.
* **generic**: ``question``, ``options`` (dict letter -> text, or a list lettered A, B, ...),
  optional ``answer`` (a letter, a 0-based index, or the text of one option), optional ``id``.
"""

from __future__ import annotations

import json
import logging
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from medforge.io import lone_surrogate_problem

logger = logging.getLogger(__name__)

Format = Literal["auto", "medqa", "medmcqa", "headqa", "generic"]
FORMATS: tuple[str, ...] = ("medqa", "medmcqa", "headqa", "generic")
LETTERS = string.ascii_uppercase
MAX_OPTIONS = 10
MAX_QUESTION_CHARS = 20_000


class BadRow(ValueError):
    """A record that cannot be normalised; the message is the quarantine reason."""


def _text(value: Any, field: str) -> str:
    if value is None:
        raise BadRow(f"{field} is missing")
    if not isinstance(value, (str, int, float)):
        raise BadRow(f"{field} must be text, got {type(value).__name__}")
    return str(value).strip()


def _check(row: dict[str, Any], max_question_chars: int = MAX_QUESTION_CHARS) -> dict[str, Any]:
    q = row["question"]
    # a lone surrogate would crash a later stage's UTF-8 write (Arrow, files, the teacher request)
    for field, text in (("id", row["id"]), ("question", q), *((f"option {k}", v) for k, v in row["options"].items())):
        problem = lone_surrogate_problem(text)
        if problem:
            raise BadRow(f"{field} {problem} in the input")
    if not q:
        raise BadRow("question is empty")
    if len(q) > max_question_chars:
        raise BadRow(f"question has {len(q)} characters, over the limit of {max_question_chars}; "
                     "split it or raise the reader's max_question_chars")
    opts = row["options"]
    if not opts:
        raise BadRow("options are missing or empty; a multiple-choice row needs 2..10 options")
    if len(opts) < 2:
        raise BadRow(f"only {len(opts)} option; a multiple-choice row needs 2..10 options")
    if len(opts) > MAX_OPTIONS:
        raise BadRow(f"{len(opts)} options, more than {MAX_OPTIONS}")
    for letter, text in opts.items():
        if not text:
            raise BadRow(f"option {letter} is empty")
    if row["answer"] is not None and row["answer"] not in opts:
        raise BadRow(f"answer {row['answer']!r} is not one of the options {sorted(opts)}")
    return row


def _options_from(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            letter = str(k).strip().upper()
            if len(letter) != 1 or letter not in LETTERS:
                raise BadRow(f"option key {k!r} is not a single letter A..J")
            out[letter] = _text(v, f"options[{k!r}]")
        return dict(sorted(out.items()))
    if isinstance(value, list):
        if len(value) > MAX_OPTIONS:
            raise BadRow(f"{len(value)} options, more than {MAX_OPTIONS}")
        return {LETTERS[i]: _text(v, f"options[{i}]") for i, v in enumerate(value)}
    raise BadRow(f"options must be a dict or a list, got {type(value).__name__}")


def _answer_letter(answer: Any, options: dict[str, str]) -> str | None:
    if answer is None or answer == "":
        return None
    if isinstance(answer, bool):
        raise BadRow(f"answer {answer!r} is not a letter, index or option text")
    if isinstance(answer, int):
        if 0 <= answer < len(options):
            return list(options)[answer]
        raise BadRow(f"answer index {answer} is out of range for {len(options)} options")
    text = str(answer).strip()
    if len(text) == 1 and text.upper() in options:
        return text.upper()
    for letter, opt in options.items():
        if opt == text:
            return letter
    raise BadRow(f"answer {answer!r} is neither an option letter nor the text of an option")


def normalise_medqa(rec: dict[str, Any], row_id: str) -> dict[str, Any]:
    options = _options_from(rec.get("options"))
    answer = rec.get("answer_idx")
    if answer in (None, "") and rec.get("answer") is not None:
        answer = rec.get("answer")
    row = {"id": str(rec.get("id") or row_id), "question": _text(rec.get("question"), "question"),
           "options": options, "answer": _answer_letter(answer, options) if options else None}
    return row


def normalise_medmcqa(rec: dict[str, Any], row_id: str, cop_base: int = 1) -> dict[str, Any]:
    options = {}
    for letter, key in zip("ABCD", ("opa", "opb", "opc", "opd"), strict=True):
        if rec.get(key) not in (None, ""):
            options[letter] = _text(rec[key], key)
    cop = rec.get("cop")
    answer: str | None = None
    if isinstance(cop, str) and cop.strip().lower() in ("a", "b", "c", "d"):
        answer = cop.strip().upper()
    elif cop not in (None, "", -1):
        try:
            idx = int(cop) - cop_base
        except (TypeError, ValueError):
            raise BadRow(f"cop {cop!r} is not an integer or a letter a..d") from None
        if not 0 <= idx < 4:
            other = 0 if cop_base == 1 else 1
            raise BadRow(f"cop={cop} is out of range under cop_base={cop_base}; "
                         f"if this file is {'the Hugging Face export (0-based)' if other == 0 else 'the original 1-based release'}, "
                         f"set cop_base={other}")
        answer = "ABCD"[idx]
    return {"id": str(rec.get("id") or row_id), "question": _text(rec.get("question"), "question"),
            "options": options, "answer": answer}


def normalise_headqa(rec: dict[str, Any], row_id: str) -> dict[str, Any]:
    answers = rec.get("answers")
    if not isinstance(answers, list):
        raise BadRow("answers must be a list of {aid, atext}")
    try:
        ordered = sorted(answers, key=lambda a: int(a["aid"]))
    except (KeyError, TypeError, ValueError, OverflowError):
        raise BadRow("every HEADQA answer needs an integer aid and an atext") from None
    if len(ordered) > MAX_OPTIONS:
        raise BadRow(f"{len(ordered)} options, more than {MAX_OPTIONS}")
    options = {LETTERS[i]: _text(a.get("atext"), f"answers[{i}].atext") for i, a in enumerate(ordered)}
    answer = None
    if rec.get("ra") not in (None, ""):
        aids = [int(a["aid"]) for a in ordered]
        try:
            answer = LETTERS[aids.index(int(rec["ra"]))]
        except (ValueError, TypeError, OverflowError):  # not an aid, or not a number at all (found by fuzzing)
            raise BadRow(f"ra={rec['ra']!r} is not the aid of any answer {aids}") from None
    rid = rec.get("id")
    if not rid and rec.get("qid") is not None:
        rid = "headqa-" + "-".join(str(rec[k]) for k in ("name", "qid") if rec.get(k) is not None)
    return {"id": str(rid or row_id), "question": _text(rec.get("qtext"), "qtext"), "options": options,
            "answer": answer}


def normalise_generic(rec: dict[str, Any], row_id: str) -> dict[str, Any]:
    options = _options_from(rec.get("options"))
    return {"id": str(rec.get("id") or row_id), "question": _text(rec.get("question"), "question"),
            "options": options, "answer": _answer_letter(rec.get("answer"), options) if options else None}


def detect_format(rec: dict[str, Any]) -> str:
    """Guess a record's format from its keys."""
    if "qtext" in rec and "answers" in rec:
        return "headqa"
    if "opa" in rec or "cop" in rec:
        return "medmcqa"
    if "answer_idx" in rec:
        return "medqa"
    return "generic"


def normalise_record(rec: Any, row_id: str, fmt: str = "auto", cop_base: int = 1,
                     max_question_chars: int = MAX_QUESTION_CHARS) -> dict[str, Any]:
    """Normalise one parsed JSON record. Raises :class:`BadRow` with the reason."""
    if not isinstance(rec, dict):
        raise BadRow(f"a row must be a JSON object, got {type(rec).__name__}")
    kind = detect_format(rec) if fmt == "auto" else fmt
    if kind == "medqa":
        row = normalise_medqa(rec, row_id)
    elif kind == "medmcqa":
        row = normalise_medmcqa(rec, row_id, cop_base)
    elif kind == "headqa":
        row = normalise_headqa(rec, row_id)
    elif kind == "generic":
        row = normalise_generic(rec, row_id)
    else:
        raise ValueError(f"unknown format {fmt!r}; use one of auto, {', '.join(FORMATS)}")
    return _check(row, max_question_chars)


def parse_line(raw: bytes, row_id: str, fmt: str = "auto", cop_base: int = 1,
               max_question_chars: int = MAX_QUESTION_CHARS) -> dict[str, Any]:
    """Decode and normalise one raw JSONL line. Raises :class:`BadRow`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRow(f"line is not valid UTF-8 ({exc.reason} at byte {exc.start}); re-encode the file as UTF-8") from None
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRow(f"line is not valid JSON: {exc.msg} at column {exc.colno}") from None
    return normalise_record(rec, row_id, fmt, cop_base, max_question_chars)


def iter_mcq_file(path: str | Path, fmt: str = "auto", cop_base: int = 1,
                  max_question_chars: int = MAX_QUESTION_CHARS) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """Stream ``(line_index, row, "")`` or ``(line_index, None, reason)`` for every non-blank line.

    Lines are read as bytes, so one bad encoding quarantines one row, not the file. A row
    without an ``id`` gets ``<file stem>:<line index>`` (stable across runs).
    """
    path = Path(path)
    with open(path, "rb") as f:
        for index, raw in enumerate(f):
            if not raw.strip():
                continue
            try:
                yield index, parse_line(raw, f"{path.stem}:{index}", fmt, cop_base, max_question_chars), ""
            except BadRow as exc:
                yield index, None, str(exc)


def quarantine_record(index: int, raw_reason: str, path: str | Path) -> dict[str, Any]:
    """The quarantine row for an input line (the raw line is not copied: it may hold PHI)."""
    return {"source": str(path), "line": index, "reason": raw_reason}
