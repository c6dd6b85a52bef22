"""``medforge filter``: exact ROUGE-L novelty filter over a JSONL file.

Reads every row first and validates it, so bad input fails before anything is written (or is
quarantined with ``--quarantine``). Outputs go to temporary files beside their targets and are
renamed into place only once all of them are complete.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medforge.generate.novelty import NoveltyFilter
from medforge.io import jsonl_line, jsonl_text_lines

logger = logging.getLogger(__name__)

NOVELTY_KEY = "_novelty"


class InputError(ValueError):
    """Bad input, with the file and line it refers to in the message."""


@dataclass
class _Rows:
    raw: list[str] = field(default_factory=list)  # original line text, written back untouched
    rows: list[dict[str, Any]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    bad: list[dict[str, Any]] = field(default_factory=list)  # quarantined lines


def _check_row(obj: Any, fld: str, where: str) -> str:
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if fld not in obj:
        raise InputError(f"{where}: missing field {fld!r}")
    value = obj[fld]
    if not isinstance(value, str):
        raise InputError(f"{where}: field {fld!r} is {type(value).__name__}, expected a string")
    return value


def read_input(path: Path, fld: str, id_field: str, quarantine: bool) -> _Rows:
    """Read and validate a JSONL file; blank lines are skipped.

    Args:
        path: Input JSONL.
        fld: Field holding the text.
        id_field: Field used as the row id when present (else ``line:<n>``).
        quarantine: Collect bad lines instead of raising.

    Returns:
        The valid rows, in order, plus the quarantined ones.

    Raises:
        InputError: On the first bad line (unless quarantining) or if no valid row remains.
    """
    out = _Rows()
    with path.open("r", encoding="utf-8", errors="strict") as fh:
        for lineno, line in enumerate(fh, start=1):
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})") from None
                value = _check_row(obj, fld, where)
            except InputError as exc:
                if not quarantine:
                    raise
                out.bad.append({"line": lineno, "error": str(exc), "raw": text})
                continue
            out.raw.append(text)
            out.rows.append(obj)
            out.texts.append(value)
            out.ids.append(str(obj[id_field]) if id_field in obj else f"line:{lineno}")
    if not out.rows:
        raise InputError(f"{path}: input is empty (no valid rows)")
    return out


def read_seeds(path: Path, fld: str) -> list[str]:
    """Read seeds: a JSON list (AlpaCare's ``med_seed.json``) of objects or strings, or JSONL.

    Raises:
        InputError: Naming the entry or line that is malformed.
    """
    content = path.read_text(encoding="utf-8")
    if content.lstrip().startswith("["):
        try:
            data = json.loads(content)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from None
        texts = []
        for k, item in enumerate(data):
            texts.append(item if isinstance(item, str) else _check_row(item, fld, f"{path}: entry {k}"))
        return texts
    texts = []
    for lineno, line in enumerate(jsonl_text_lines(content), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno})") from None
        texts.append(obj if isinstance(obj, str) else _check_row(obj, fld, f"{path}:{lineno}"))
    return texts


class _AtomicWriters:
    """Temp files beside each target, renamed into place together on commit, removed on abort."""

    def __init__(self) -> None:
        self._files: list[tuple[Any, str, Path]] = []

    def open(self, target: Path):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        fh = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        self._files.append((fh, tmp, target))
        return fh

    def commit(self) -> None:
        for fh, _, _ in self._files:
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
        for _, tmp, target in self._files:
            os.replace(tmp, target)
        self._files.clear()

    def abort(self) -> None:
        for fh, tmp, _ in self._files:
            fh.close()
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        self._files.clear()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="medforge filter",
        description="Keep rows whose ROUGE-L F against every earlier kept row (and the seeds) "
        "is <= threshold; greedy in input order, identical to rouge_score decisions.",
    )
    p.add_argument("--input", required=True, type=Path, help="candidates, JSONL")
    p.add_argument("--output", required=True, type=Path, help="kept rows, JSONL, input order")
    p.add_argument("--seeds", type=Path, help="seed instructions: JSON list (AlpaCare) or JSONL")
    p.add_argument("--threshold", type=float, default=0.7, help="a score > threshold rejects")
    p.add_argument("--field", default="instruction", help="text field (default: instruction)")
    p.add_argument("--id-field", default="id", help="row id field for nearest ids (default: id)")
    p.add_argument("--rejected", type=Path, help="write rejected rows here with best score/nearest id")
    p.add_argument("--quarantine", type=Path, help="write bad lines here instead of failing")
    return p


def cli_main(argv: list[str]) -> int:
    """Entry point of ``medforge filter``; returns the exit code (2 on bad input)."""
    args = build_parser().parse_args(argv)
    if not 0.0 <= args.threshold <= 1.0:
        print(f"medforge filter: --threshold must be in [0, 1], got {args.threshold}", file=sys.stderr)
        return 2
    try:
        seeds = read_seeds(args.seeds, args.field) if args.seeds else []
        data = read_input(args.input, args.field, args.id_field, quarantine=args.quarantine is not None)
    except (InputError, OSError, UnicodeDecodeError) as exc:
        print(f"medforge filter: {exc}", file=sys.stderr)
        return 2

    t0 = time.perf_counter()
    filt = NoveltyFilter(threshold=args.threshold)
    filt.add(seeds, [f"seed:{k}" for k in range(len(seeds))])
    decisions = filt.filter(data.texts, data.ids)
    elapsed = time.perf_counter() - t0

    writers = _AtomicWriters()
    try:
        out = writers.open(args.output)
        rej = writers.open(args.rejected) if args.rejected else None
        for raw, row, dec in zip(data.raw, data.rows, decisions, strict=True):
            if dec.keep:
                out.write(raw + "\n")
            elif rej is not None:
                extra = {"best_score": dec.best_score, "nearest_id": dec.nearest_id}
                rej.write(jsonl_line({**row, NOVELTY_KEY: extra}) + "\n")
        if args.quarantine:
            q = writers.open(args.quarantine)
            for bad in data.bad:
                q.write(jsonl_line(bad) + "\n")
        writers.commit()
    except BaseException:
        writers.abort()
        raise
    kept = sum(d.keep for d in decisions)
    print(
        f"medforge filter: {kept} kept, {len(decisions) - kept} rejected, {len(data.bad)} quarantined "
        f"({len(seeds)} seeds, threshold {args.threshold}) in {elapsed:.2f}s"
    )
    return 0
