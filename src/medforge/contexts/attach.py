"""Join generated contexts back onto the local questions: the input of the multiple-choice job.

The context job never lets the question text leave the site, so its output rows hold the id,
the keywords and the contexts but not the question. Training runs on site, so this step reads
the original question file again (with the same reader, so the ids are the same ones the job
used) and writes one JSONL row per question that has a context::

    {"id", "question", "options", "answer", "overall_context", "option_contexts"}

which is what ``ray_jobs/finetune_mc.py`` reads (``data.train_path`` etc.).

    medforge attach-contexts --questions medqa_train.jsonl --contexts runs/contexts/ --output train.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from medforge.datasets.mcq import FORMATS, iter_mcq_file
from medforge.io import jsonl_line, read_jsonl

logger = logging.getLogger(__name__)


def load_contexts(run_dir: str | Path) -> dict[str, tuple[str, dict[str, str]]]:
    """``id -> (overall_context, option_contexts)`` from a context run's ``out/`` shards (Parquet or JSONL)."""
    out = Path(run_dir) / "out"
    parts = sorted(out.glob("part-*.parquet")) + sorted(out.glob("part-*.jsonl"))
    if not parts:
        raise FileNotFoundError(f"no output shards in {out}; point --contexts at the output.dir of a "
                                "contexts run (it holds out/part-*.parquet or out/part-*.jsonl)")
    found: dict[str, tuple[str, dict[str, str]]] = {}
    for part in parts:
        if part.suffix == ".parquet":
            import pyarrow.parquet as pq

            rows = pq.read_table(part, columns=["id", "overall_context", "option_contexts"]).to_pylist()
        else:
            rows = read_jsonl(part)
        for r in rows:
            option_contexts = r["option_contexts"]
            # a Parquet map<string,string> reads back as a list of (key, value) pairs
            found[r["id"]] = (r["overall_context"], dict(option_contexts))
    return found


def attach_contexts(questions: str | Path, run_dir: str | Path, output: str | Path,
                    fmt: str = "auto", cop_base: int = 1) -> dict[str, int]:
    """Write ``output``: the questions of ``questions`` that have a context in ``run_dir``, with it.

    Returns counts: ``rows`` written, ``without_context`` (quarantined by the job or not generated
    yet) and ``unreadable`` input lines (the job quarantined those too).
    """
    contexts = load_contexts(run_dir)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    counts = {"rows": 0, "without_context": 0, "unreadable": 0}
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for _, row, _ in iter_mcq_file(questions, fmt, cop_base):
                if row is None:
                    counts["unreadable"] += 1
                    continue
                ctx = contexts.get(row["id"])
                if ctx is None:
                    counts["without_context"] += 1
                    continue
                out: dict[str, Any] = {**row, "overall_context": ctx[0], "option_contexts": ctx[1]}
                f.write(jsonl_line(out) + "\n")
                counts["rows"] += 1
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if counts["without_context"]:
        logger.warning("%d question(s) have no context in %s (quarantined by the job or not generated yet); "
                       "left out of %s", counts["without_context"], run_dir, output)
    return counts


def cli_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="medforge attach-contexts", description=__doc__.split("\n")[0])
    ap.add_argument("--questions", required=True, help="the question file the context job read (JSONL)")
    ap.add_argument("--contexts", required=True, help="the context job's output.dir")
    ap.add_argument("--output", required=True, help="JSONL for finetune_mc (data.train_path / dev_path / test_path)")
    ap.add_argument("--format", default="auto", choices=["auto", *FORMATS], help="as the job's input.format")
    ap.add_argument("--cop-base", type=int, default=1, choices=[0, 1], help="as the job's input.cop_base (MedMCQA)")
    args = ap.parse_args(argv)
    try:
        counts = attach_contexts(args.questions, args.contexts, args.output, args.format, args.cop_base)
    except FileNotFoundError as exc:
        print(f"medforge attach-contexts: {exc}", flush=True)
        return 2
    print(json.dumps(counts))
    return 0 if counts["rows"] else 1
