"""``medforge retry-quarantine``: send chosen quarantined rows of a run back through the teacher.

Quarantined rows are not retried on resume (a bad reply or a bad request would fail again).
After a fix -- a larger ``max_model_len``, a server that now takes the JSON schema, a better
model -- this command makes the rows whose quarantine reason contains one of ``--reason``
pending again; running the job's same command then redoes them::

    medforge retry-quarantine --run runs/contexts_api --reason "context length" --reason "no context for option"
    python ray_jobs/contexts.py --config configs/contexts/openai_api.yaml

* Context generation (``staged/manifest.json`` in the run folder): a chunk holding such a row
  loses its shard and quarantine part (both rewritten when it is redone; its good rows are
  regenerated with the same request seeds, so nothing is duplicated).
* Instruction synthesis (``responses/`` in the run folder): those failed responses are removed
  from their ``responses/part_*.jsonl`` (rewritten atomically), so their tasks are answered again.
  Rejected *tasks* are not retryable: rounds are replayed exactly as saved.

``--dry-run`` only counts. Exit status 0, or 2 for a folder that is no medforge run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from medforge.io import atomic_write_jsonl, read_jsonl


def _matches(reason: str, wanted: list[str]) -> bool:
    return any(w.lower() in (reason or "").lower() for w in wanted)


def retry_contexts(root: Path, reasons: list[str], dry_run: bool = False) -> dict[str, int]:
    chunks = rows = 0
    for qpath in sorted((root / "quarantine").glob("part-*.jsonl")):
        hits = [r for r in read_jsonl(qpath) if _matches(r.get("reason", ""), reasons)]
        if not hits:
            continue
        chunks += 1
        rows += len(hits)
        if not dry_run:
            for shard in (root / "out").glob(f"{qpath.stem}.*"):
                shard.unlink()  # the shard is the done marker: remove it first
            qpath.unlink()
    return {"chunks_reopened": chunks, "rows_matched": rows}


def retry_responses(root: Path, reasons: list[str], dry_run: bool = False) -> dict[str, int]:
    rows = parts = 0
    for part in sorted((root / "responses").glob("part_*.jsonl")):
        kept, hit = [], 0
        for r in read_jsonl(part):
            if r.get("output") is None and _matches(r.get("error", ""), reasons):
                hit += 1
            else:
                kept.append(r)
        if hit:
            rows += hit
            parts += 1
            if not dry_run:
                atomic_write_jsonl(part, kept)
    return {"parts_rewritten": parts, "rows_matched": rows}


def cli_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="medforge retry-quarantine", description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, type=Path, help="the job's output.dir")
    ap.add_argument("--reason", action="append", required=True,
                    help="retry rows whose quarantine reason contains this text (case-insensitive); repeatable")
    ap.add_argument("--dry-run", action="store_true", help="count only, change nothing")
    args = ap.parse_args(argv)
    root = args.run
    if (root / "staged" / "manifest.json").is_file():
        result = retry_contexts(root, args.reason, args.dry_run)
    elif (root / "responses").is_dir() and (root / "run.json").is_file():
        result = retry_responses(root, args.reason, args.dry_run)
    else:
        print(f"medforge retry-quarantine: {root} is not a medforge context or instruction run folder "
              "(no staged/manifest.json or responses/); give the job's output.dir", file=sys.stderr)
        return 2
    print(json.dumps({**result, "dry_run": args.dry_run}))
    if result["rows_matched"] and not args.dry_run:
        print("medforge retry-quarantine: now run the job's same command again to redo them", file=sys.stderr)
    return 0
