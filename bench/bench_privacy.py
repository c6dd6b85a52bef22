"""Privacy-guard benchmark (issue 13): PHI strings sent and medical terms kept, ours vs a reference.

    PYTHONPATH=src python bench/bench_privacy.py                       # reference = git main
    PYTHONPATH=src python bench/bench_privacy.py --ref 006553e --rows 3000

Scored sets (each row carries its ground truth: ``phi`` strings and ``medical`` terms):

* ``tests/data/phi_vignettes.jsonl`` (9 hand-written vignettes, every Safe Harbor type);
* ``tests/data/phi_vignettes_options.jsonl`` (hand-written: PHI inside options, lower-case
  names, serials, plates, URLs, IPs, account and beneficiary numbers);
* ``--rows`` synthetic MedQA-style rows from :mod:`privacy_data` (deterministic).

For every row the payload that would cross the trust boundary (keywords + options, as
``extract_keywords(...).payload()``) is serialised and lower-cased. A PHI string counts as
*sent* when its lower-case form occurs in that text, not inside a longer word (a name "Ines"
is not sent by the keyword "bradykinesia"); a medical term counts as *kept* when it is a
substring of it. The same rows are scored, in one run, by this checkout and by the reference
revision ``--ref`` (its ``src/`` is extracted with ``git archive`` and scored in a
subprocess, since both are the ``medforge`` package). Results: a Markdown table on stdout
and JSON lines appended to ``--results``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _contains(text: str, s: str) -> bool:
    """``s`` occurs in ``text`` not inside a longer word ("ines" is not sent by "bradykinesia")."""
    import re

    return re.search(r"(?<![^\W_])" + re.escape(s) + r"(?![^\W_])", text) is not None


def score_file(path: str) -> dict:
    """Score one JSONL file with whatever ``medforge`` is importable (ours or the reference)."""
    from medforge.privacy.keywords import KeywordConfig, extract_keywords
    from medforge.privacy.vocab import load_vocabulary

    cfg = KeywordConfig()
    vocab = load_vocabulary(tuple(cfg.sources), cfg.cache_dir)
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    phi_total = phi_sent = med_total = med_kept = rows_leaking = 0
    budget = 0.0
    leaks: list[str] = []
    t0 = time.perf_counter()
    for row in rows:
        g = extract_keywords(row["question"], row["options"], cfg, vocab)
        sent = json.dumps(g.payload(), ensure_ascii=False).lower()
        leaked = [p for p in row["phi"] if _contains(sent, p.lower())]
        phi_total += len(row["phi"])
        phi_sent += len(leaked)
        rows_leaking += bool(leaked)
        leaks += [f"{row['id']}: {p}" for p in leaked]
        med_total += len(row["medical"])
        med_kept += sum(m.lower() in sent for m in row["medical"])
        budget += g.privacy_budget
    dt = time.perf_counter() - t0
    return {"rows": len(rows), "phi_strings": phi_total, "phi_sent": phi_sent, "rows_leaking": rows_leaking,
            "medical_terms": med_total, "medical_kept": med_kept,
            "medical_kept_share": round(med_kept / med_total, 4) if med_total else None,
            "mean_privacy_budget": round(budget / len(rows), 4) if rows else None,
            "rows_per_s": round(len(rows) / dt, 1) if dt else None, "leaks": leaks[:20]}


def score_reference(ref: str, files: list[str]) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "src.tar"
        subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), ref, "src/medforge"], check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "src")}
        code = ("import json, sys; sys.path.insert(1, %r); from bench_privacy import score_file; "
                "print(json.dumps([score_file(p) for p in sys.argv[1:]]))") % str(Path(__file__).resolve().parent)
        out = subprocess.run([sys.executable, "-c", code, *files], env=env, check=True, capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from privacy_data import write_rows

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default="main", help="git revision of the reference guard (default: main)")
    ap.add_argument("--rows", type=int, default=2000, help="synthetic MedQA-style rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="runs/bench_privacy")
    ap.add_argument("--results", default="runs/bench_privacy/results.jsonl")
    args = ap.parse_args()
    work = Path(args.work)
    synthetic = write_rows(work / f"synthetic_{args.rows}_seed{args.seed}.jsonl", args.rows, args.seed)
    files = [str(ROOT / "tests/data/phi_vignettes.jsonl"), str(ROOT / "tests/data/phi_vignettes_options.jsonl"),
             str(synthetic)]
    ours = [score_file(p) for p in files]
    ref = score_reference(args.ref, files)
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"| set | rows | PHI strings | sent: ref ({args.ref}) | sent: ours | medical terms | kept: ref | kept: ours |")
    print("|---|---|---|---|---|---|---|---|")
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    with open(args.results, "a", encoding="utf-8") as f:
        for path, o, r in zip(files, ours, ref, strict=True):
            name = Path(path).name
            print(f"| {name} | {o['rows']} | {o['phi_strings']} | {r['phi_sent']} ({r['rows_leaking']} rows) | "
                  f"{o['phi_sent']} ({o['rows_leaking']} rows) | {o['medical_terms']} | "
                  f"{r['medical_kept_share']:.1%} | {o['medical_kept_share']:.1%} |")
            f.write(json.dumps({"set": name, "ours_rev": rev, "ref": args.ref, "ours": o, "reference": r}) + "\n")
    for path, o in zip(files, ours, strict=True):
        for leak in o["leaks"]:
            print(f"leak (ours) {Path(path).name}: {leak}", file=sys.stderr)


if __name__ == "__main__":
    main()
