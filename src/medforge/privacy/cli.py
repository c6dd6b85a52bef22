"""``medforge keywords``: show exactly what would cross the trust boundary, with no network.

    medforge keywords --input data/medqa_test.jsonl --output runs/keywords.jsonl

writes one row per good input row: ``{"id", "keywords", "options"}`` -- the payload the
teacher would receive, and nothing else. Beside it:

* ``<output stem>.budget.jsonl``: per row ``id``, ``privacy_budget`` (share of the question's
  words that were sent), word counts, identifier kinds found, keywords dropped for them and
  ``redactions``: what was withheld, counted by identifier type (never the values);
* ``<output stem>.quarantine.jsonl``: input lines that could not be read, with the reason
  (the raw line is not copied: it may hold PHI).

The input is streamed line by line, so memory stays flat for any file size.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

from medforge.datasets.mcq import FORMATS, MAX_QUESTION_CHARS, iter_mcq_file, quarantine_record
from medforge.io import jsonl_line
from medforge.privacy.keywords import KeywordConfig, extract_keywords
from medforge.privacy.vocab import load_vocabulary

logger = logging.getLogger(__name__)


def side_paths(output: Path) -> tuple[Path, Path]:
    stem = output.name[: -len(output.suffix)] if output.suffix else output.name
    return output.with_name(f"{stem}.budget.jsonl"), output.with_name(f"{stem}.quarantine.jsonl")


def run_keywords(input_path: str | Path, output_path: str | Path, fmt: str = "auto", cop_base: int = 1,
                 cfg=None) -> dict[str, float | int]:
    """Extract and guard every row of ``input_path``; returns a summary."""
    cfg = cfg or KeywordConfig()
    vocab = load_vocabulary(tuple(cfg.sources), cfg.cache_dir)
    out = Path(output_path)
    budget_path, quarantine_path = side_paths(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmps = {p: tempfile.mkstemp(dir=out.parent, prefix=f".{p.name}.", suffix=".tmp") for p in (out, budget_path, quarantine_path)}
    n_ok = n_bad = 0
    budget_sum = 0.0
    redactions: Counter[str] = Counter()
    try:
        with os.fdopen(tmps[out][0], "w", encoding="utf-8") as f_out, \
             os.fdopen(tmps[budget_path][0], "w", encoding="utf-8") as f_budget, \
             os.fdopen(tmps[quarantine_path][0], "w", encoding="utf-8") as f_q:
            for index, row, reason in iter_mcq_file(input_path, fmt, cop_base, MAX_QUESTION_CHARS):
                if row is None:
                    f_q.write(jsonl_line(quarantine_record(index, reason, input_path)) + "\n")
                    n_bad += 1
                    continue
                g = extract_keywords(row["question"], row["options"], cfg, vocab)
                f_out.write(jsonl_line({"id": row["id"], **g.payload()}) + "\n")
                f_budget.write(json.dumps({
                    "id": row["id"], "privacy_budget": g.privacy_budget, "n_words": g.n_words,
                    "n_sent_words": g.n_sent_words, "phi_kinds": g.phi_kinds,
                    "dropped_keywords": g.dropped_keywords, "redacted_options": g.redacted_options,
                    "redactions": g.redactions,
                }) + "\n")
                redactions.update(g.redactions)
                budget_sum += g.privacy_budget
                n_ok += 1
        for path, (_, tmp) in tmps.items():
            os.replace(tmp, path)
    except BaseException:
        for _, tmp in tmps.values():
            Path(tmp).unlink(missing_ok=True)
        raise
    return {"rows": n_ok, "quarantined": n_bad,
            "mean_privacy_budget": round(budget_sum / n_ok, 4) if n_ok else 0.0,
            "redactions": dict(sorted(redactions.items()))}


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="medforge keywords", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="JSONL of MedQA / MedMCQA / HEADQA / generic rows.")
    parser.add_argument("--output", required=True, help="JSONL to write: id, keywords, options per row.")
    parser.add_argument("--format", default="auto", choices=["auto", *FORMATS], help="Input format (default: detect per row).")
    parser.add_argument("--cop-base", type=int, default=1, choices=[0, 1],
                        help="MedMCQA: 1 for the original release (cop 1..4), 0 for the HF datasets export (0..3).")
    parser.add_argument("--max-keywords", type=int, default=None, help="Keep at most N keywords per question.")
    parser.add_argument("--sources", default=None, help="Comma-separated vocabularies (hpo,icd10cm,drugs,clinical).")
    args = parser.parse_args(argv)
    if not Path(args.input).is_file():
        print(f"medforge keywords: --input {args.input} does not exist", file=sys.stderr)
        return 2

    kw = {"max_keywords": args.max_keywords}
    if args.sources:
        kw["sources"] = [s.strip() for s in args.sources.split(",") if s.strip()]
    try:
        cfg = KeywordConfig(**kw)
    except ValueError as exc:
        print(f"medforge keywords: {exc}", file=sys.stderr)
        return 2
    summary = run_keywords(args.input, args.output, args.format, args.cop_base, cfg)
    print(json.dumps(summary))
    totals = ", ".join(f"{k}={v}" for k, v in summary["redactions"].items()) or "none"
    print(f"medforge keywords: {summary['rows']} rows guarded; redacted by identifier type: {totals}", file=sys.stderr)
    return 0
