"""The dataset card of a context-generation run (``contexts``).

The numbers are kept in a :class:`ContextStats` accumulator, fed one written chunk at a time
(the job keeps one, primed from the folder on resume, so the card after each chunk costs no
re-read of a million rows); :func:`stats_from_folder` builds the same accumulator from a run
folder's files. :func:`contexts_card` turns stats + ``run.json`` + the staging manifest +
``summary.json`` into a :class:`~medforge.cards.render.Card` (pure).

Shown: the parse rate and the reply-gate rejections (by reason and by chunk), context lengths,
keywords per question, the preliminary-answer accuracy where the questions carry answers,
redactions by kind, samples, and the teacher, its sampling and the prompt hash.
"""

from __future__ import annotations

import json
import re
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medforge.cards import render as R
from medforge.io import read_jsonl

#: quarantine reasons that are the reply gates (medforge.generate.response_checks), as "<gate>: why"
GATE_REASONS = ("empty", "refusal", "repetition", "echo", "not_english", "truncated")
_PART = re.compile(r"part-(\d+)")
SAMPLES = 4


def reason_key(reason: str) -> str:
    """The counted key of a quarantine reason: the gate name, ``engine error``, or the parse failure's text."""
    head = str(reason).split(":")[0].strip()
    return head if head in GATE_REASONS or head == "engine error" else f"parse: {head[:60]}"


@dataclass
class ContextStats:
    """Running totals over the written chunks."""

    chunks: int = 0
    rows_ok: int = 0
    rows_bad: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    reasons_by_chunk: dict[int, Counter[str]] = field(default_factory=dict)
    overall_words: array = field(default_factory=lambda: array("i"))
    option_words: array = field(default_factory=lambda: array("i"))
    keywords: array = field(default_factory=lambda: array("i"))
    with_answer: int = 0
    prelim_correct: int = 0
    truncated_kept: int = 0
    redactions: Counter[str] = field(default_factory=Counter)
    samples_ok: list[dict[str, Any]] = field(default_factory=list)
    samples_bad: list[dict[str, Any]] = field(default_factory=list)

    def add_chunk(self, chunk: int, good: list[dict[str, Any]], bad: list[dict[str, Any]]) -> None:
        """Add one written chunk: its output rows and its quarantined rows."""
        self.chunks += 1
        self.rows_ok += len(good)
        self.rows_bad += len(bad)
        for r in good:
            self.overall_words.append(len(str(r.get("overall_context") or "").split()))
            for text in dict(r.get("option_contexts") or {}).values():
                self.option_words.append(len(str(text or "").split()))
            self.keywords.append(len(list(r.get("keywords") or [])))
            if r.get("answer"):
                self.with_answer += 1
                self.prelim_correct += str(r.get("preliminary_answer") or "").strip().upper() == str(r["answer"]).strip().upper()
            self.truncated_kept += bool(r.get("response_truncated"))
            for kind, n in dict(r.get("redactions") or {}).items():
                self.redactions[kind] += int(n)
            if len(self.samples_ok) < SAMPLES:
                self.samples_ok.append(r)
        for b in bad:
            key = reason_key(b.get("reason", ""))
            self.reasons[key] += 1
            self.reasons_by_chunk.setdefault(chunk, Counter())[key] += 1
            if len(self.samples_bad) < SAMPLES:
                self.samples_bad.append(b)

    @property
    def replies(self) -> int:
        return self.rows_ok + self.rows_bad

    def parse_rate(self) -> float:
        """Share of replies that parsed (gate rejections parsed; engine errors are not replies)."""
        engine = self.reasons.get("engine error", 0)
        failed = sum(v for k, v in self.reasons.items() if k.startswith("parse:"))
        n = self.replies - engine
        return (n - failed) / n if n else 0.0

    def prelim_accuracy(self) -> float | None:
        return self.prelim_correct / self.with_answer if self.with_answer else None


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        for r in rows:  # Arrow maps come back as lists of pairs
            for k in ("option_contexts", "options", "redactions"):
                if isinstance(r.get(k), list):
                    r[k] = dict(r[k])
        return rows
    return list(read_jsonl(path))


def stats_from_folder(root: str | Path) -> ContextStats:
    """Stats over every written chunk of a run folder (``out/part-*`` and ``quarantine/part-*``)."""
    root = Path(root)
    st = ContextStats()
    for shard in sorted((root / "out").glob("part-*")):
        m = _PART.search(shard.name)
        if not m or shard.name.startswith("."):
            continue
        chunk = int(m.group(1))
        q = root / "quarantine" / f"part-{chunk:05d}.jsonl"
        st.add_chunk(chunk, _read_rows(shard), list(read_jsonl(q)) if q.is_file() else [])
    return st


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def contexts_card(st: ContextStats, fingerprint: dict[str, Any], manifest: dict[str, Any],
                  summary: dict[str, Any] | None, plots: bool = True) -> R.Card:
    """The card of one context run (pure: text and PNG bytes)."""
    fp, summ = fingerprint, summary or {}
    gen = fp.get("generation") or {}
    card = R.Card(title=f"Contexts dataset: {st.rows_ok} questions with context from {fp.get('teacher_model', '?')}")
    card.metadata = {
        "language": ["en"], "license": "other",
        "task_categories": ["question-answering", "multiple-choice"],
        "tags": ["medical", "synthetic", "contexts", "privacy-preserving", "medforge"],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "out/part-*"}]}],
        "medforge": {"job": "contexts", "final": summary is not None, "teacher": fp.get("teacher_model"),
                     "prompt_sha256": fp.get("prompt_sha256")},
    }
    state = "final" if summary is not None else "in progress (rewritten after every chunk)"
    card.notes.append(f"Made by medforge's contexts job; this card is {state}.")
    P = R.plotter(card, plots)  # noqa: N806 - P(name, draw): a plot's marker, "" when there are no plots

    acc = st.prelim_accuracy()
    card.sections.append(("Overview", R.md_table(["", ""], [
        ("input rows (staged) / input lines quarantined", f"{manifest.get('rows', '?')} / {manifest.get('quarantined', '?')}"),
        ("chunks written / staged", f"{st.chunks} / {len(manifest.get('chunks') or {}) or '?'}"),
        ("rows with a context", st.rows_ok),
        ("rows quarantined", st.rows_bad),
        ("parse rate (replies that parsed)", f"{100 * st.parse_rate():.1f}%"),
        ("rows rejected by the reply gates", sum(v for k, v in st.reasons.items() if k in GATE_REASONS)),
        ("truncated contexts kept (marked `response_truncated`)", st.truncated_kept),
        ("preliminary-answer accuracy", f"{100 * acc:.1f}% of {st.with_answer} questions with an answer" if acc is not None
         else "the questions carry no answers"),
        ("wall time (s)", summ.get("wall_time_s", "?")),
    ])))
    by_chunk = {c: dict(v) for c, v in st.reasons_by_chunk.items()}
    card.sections.append(("Rejections", "\n".join([
        P("reasons", lambda: R.barh_png(st.reasons, "rows quarantined, by reason")), "",
        R.counts_table(st.reasons, "reason") if st.reasons else "none", "",
        P("reasons_by_chunk", lambda: R.stacked_png(by_chunk, "rows quarantined per chunk", "chunk")),
    ])))
    card.sections.append(("Lengths", "\n".join([
        P("lengths", lambda: R.hist_png({"overall context": list(st.overall_words), "option context": list(st.option_words)},
                                        "context lengths", "words")), "",
        R.md_table(["", "n", "min", "median", "p90", "max", "mean"],
                   [("overall context (words)", *R.quantiles(list(st.overall_words)).values()),
                    ("option context (words)", *R.quantiles(list(st.option_words)).values()),
                    ("keywords per question", *R.quantiles(list(st.keywords)).values())]),
    ])))
    if st.redactions:
        card.sections.append(("Privacy guard", "Identifiers withheld from the teacher, by kind (never values):\n\n"
                               + R.counts_table(st.redactions, "kind")))
    ok = [(", ".join(list(r.get("keywords") or [])[:8]), R.clip(r.get("overall_context"), 250),
           f"{r.get('preliminary_answer')} (answer {r.get('answer') or '-'})") for r in st.samples_ok]
    bad = [(R.clip(b.get("reason"), 120), R.clip(b.get("raw_text"), 250)) for b in st.samples_bad]
    card.sections.append(("Samples", "\n".join([
        "**With context** (first written):", "",
        R.md_table(["keywords sent", "overall context", "preliminary"], ok) if ok else "none yet", "",
        "**Quarantined** (first written):", "",
        R.md_table(["reason", "reply"], bad) if bad else "none"])))
    card.sections.append(("Provenance", R.md_table(["", ""], [
        ("teacher", f"{fp.get('teacher_model', '?')} ({fp.get('teacher_kind', '?')})"),
        ("sampling", json.dumps(gen.get("sampling", {}))),
        ("output format / structured", f"{gen.get('output_format', '?')} / {gen.get('structured_output', '?')}"),
        ("demonstrations", gen.get("num_demonstrations", "?")),
        ("prompt sha256 (templates + demonstrations)", fp.get("prompt_sha256", "?")),
        ("input", json.dumps(fp.get("input", {}))),
        ("seed", fp.get("seed", "?")),
    ])))
    return card


def write_contexts_card(root: str | Path, st: ContextStats, summary: dict[str, Any] | None = None) -> Path:
    """Write ``card.md`` / ``card.html`` / plots into the run folder."""
    root = Path(root)
    card = contexts_card(st, _json(root / "run.json"), _json(root / "staged" / "manifest.json"), summary)
    return R.write_card(root, card)
