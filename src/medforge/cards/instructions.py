"""The dataset card of an instruction-synthesis run (``generate``).

Pure parts: :func:`inputs_from_folder` reads a finished run folder (``run.json``,
``summary.json``, ``dataset/medinstruct.jsonl``, ``quarantine/*.jsonl``) into
:class:`InstructionCardInputs`; :func:`instruction_card` turns those into a
:class:`~medforge.cards.render.Card` (text and PNG plots). :func:`write_instruction_card` is
what the job calls after every round and chunk: mid-run it builds the inputs from the run's
state in memory (nothing is in ``dataset/`` yet), at the end from the folder.

Shown: counts by type, topic, viewpoint and difficulty; length histograms of instruction,
input and output; task rejections by reason and by round; reply-gate rejections by reason;
the novelty profile; top root verbs with their first nouns; samples of kept and rejected
rows; teacher, sampling and prompt hashes.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medforge.cards import render as R
from medforge.cards.verbs import METHOD as VERB_METHOD
from medforge.cards.verbs import verb_noun_counts
from medforge.datasets.alpaca import dataset_input
from medforge.io import read_jsonl
from medforge.rouge import tokenize

_ROUND = re.compile(r"^r(\d+)-")


@dataclass
class InstructionCardInputs:
    """Everything the card shows, as plain rows.

    Attributes:
        rows: dataset rows (``instruction``, ``input``, ``output``, ``type``, ``topic``, ``view``,
            ``difficulty``, ``novelty_best_rouge_l``, optional ``response_truncated``).
        tasks_rejected: rows of ``quarantine/tasks_rejected.jsonl`` (``reason``, ``request_id``, ``task``...).
        responses_failed: rows of ``quarantine/responses_failed.jsonl`` (``gate``, ``reason``, ``raw_text``, ``task``).
        fingerprint: ``run.json`` (teacher, sampling, template hashes).
        summary: ``summary.json``, or ``None`` mid-run.
        final: the run has finished (``summary.json`` written).
        answered: replies saved so far (mid-run), for the progress section.
    """

    rows: list[dict[str, Any]]
    tasks_rejected: list[dict[str, Any]] = field(default_factory=list)
    responses_failed: list[dict[str, Any]] = field(default_factory=list)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    final: bool = False
    answered: int | None = None
    seed_instructions: list[str] = field(default_factory=list)


#: pairs the exact novelty profile may score per card (~1 us each with rapidfuzz): all kept tasks of a
#: small run, a random sample of them in a large one
NOVELTY_MAX_PAIRS = 2_000_000


def novelty_profile(instructions: list[str], seeds: list[str], max_pairs: int = NOVELTY_MAX_PAIRS,
                    seed: int = 0) -> tuple[list[float], int]:
    """Each (sampled) kept instruction's highest ROUGE-L F1 to every other kept instruction and the seeds.

    Exact (rouge_score's tokenizer, LCS by rapidfuzz on token ids), unlike the novelty filter's
    recorded score, which for a kept task is a lower bound (it prunes pairs that cannot exceed the
    threshold). Returns ``(scores, how many instructions were scored)``.
    """
    from rapidfuzz import process
    from rapidfuzz.distance import LCSseq

    pool_texts = list(instructions) + list(seeds)
    if len(instructions) < 1 or len(pool_texts) < 2:
        return [], 0
    vocab: dict[str, int] = {}
    # one character per token id: rapidfuzz's LCS then runs on token sequences, bit-parallel in C++
    enc = ["".join(chr(0x100 + vocab.setdefault(w, len(vocab))) for w in tokenize(t)) for t in pool_texts]
    n_query = max(1, min(len(instructions), max_pairs // len(pool_texts)))
    picked = sorted(random.Random(seed).sample(range(len(instructions)), n_query))
    lcs = process.cdist([enc[i] for i in picked], enc, scorer=LCSseq.similarity, workers=1)
    lengths = [len(e) for e in enc]
    scores = []
    for row, i in enumerate(picked):
        best = 0.0
        for j, v in enumerate(lcs[row]):
            if j != i and v:
                best = max(best, 2.0 * v / (lengths[i] + lengths[j]))
        scores.append(round(best, 4))
    return scores, n_query


def _read(path: Path) -> list[dict[str, Any]]:
    return list(read_jsonl(path)) if path.is_file() else []


def inputs_from_folder(root: str | Path) -> InstructionCardInputs:
    """Read a finished (or written-out) run folder."""
    root = Path(root)
    summary = json.loads((root / "summary.json").read_text()) if (root / "summary.json").is_file() else None
    fingerprint = json.loads((root / "run.json").read_text()) if (root / "run.json").is_file() else {}
    return InstructionCardInputs(
        rows=_read(root / "dataset" / "medinstruct.jsonl"),
        tasks_rejected=_read(root / "quarantine" / "tasks_rejected.jsonl"),
        responses_failed=_read(root / "quarantine" / "responses_failed.jsonl"),
        fingerprint=fingerprint,
        summary=summary,
        final=summary is not None,
    )


def _words(text: Any) -> int:
    return len(str(text or "").split())


def _round_of(rec: dict[str, Any]) -> int | None:
    m = _ROUND.match(str(rec.get("request_id") or (rec.get("task") or {}).get("request_id") or ""))
    return int(m.group(1)) if m else None


def rejections_by_round(tasks_rejected: list[dict[str, Any]]) -> dict[int, Counter[str]]:
    """round -> Counter of task-rejection reasons (pure)."""
    out: dict[int, Counter[str]] = {}
    for rec in tasks_rejected:
        r = _round_of(rec)
        if r is not None:
            out.setdefault(r, Counter())[str(rec.get("reason"))] += 1
    return out


def instruction_stats(inp: InstructionCardInputs) -> dict[str, Any]:
    """The numbers on the card (pure; also what the tests check)."""
    rows = inp.rows
    verbs, nouns, no_verb = verb_noun_counts([r["instruction"] for r in rows])
    novelty_rejected = [float((t.get("task") or {}).get("novelty_best_rouge_l", 0.0))
                        for t in inp.tasks_rejected if t.get("reason") == "novelty"]
    exact, n_scored = novelty_profile([r["instruction"] for r in rows], inp.seed_instructions)
    return {
        "rows": len(rows),
        "by_type": Counter(str(r.get("type")) for r in rows),
        "by_topic": Counter(str(r.get("topic")) for r in rows),
        "by_view": Counter(str(r.get("view")) for r in rows),
        "by_difficulty": Counter(str(r.get("difficulty")) for r in rows),
        "lengths": {k: [_words(r.get(k)) for r in rows if k != "input" or r.get("input")]
                    for k in ("instruction", "input", "output")},
        "task_rejections": Counter(str(t.get("reason")) for t in inp.tasks_rejected),
        "task_rejections_by_round": rejections_by_round(inp.tasks_rejected),
        "response_rejections": Counter(str(f.get("gate") or "other") for f in inp.responses_failed),
        "truncated_kept": sum(1 for r in rows if r.get("response_truncated")),
        "novelty_kept": [float(r.get("novelty_best_rouge_l") or 0.0) for r in rows],
        "novelty_rejected": novelty_rejected,
        "novelty_exact": exact,
        "novelty_exact_n": n_scored,
        "verbs": verbs,
        "verb_nouns": nouns,
        "no_root_verb": no_verb,
    }


def _provenance(inp: InstructionCardInputs) -> str:
    fp = inp.fingerprint
    gen = fp.get("generation") or {}
    lines = [
        R.md_table(["", ""], [
            ("teacher", f"{fp.get('teacher_model', '?')} ({fp.get('teacher_kind', '?')})"),
            ("task sampling", json.dumps(gen.get("sampling", {}))),
            ("response sampling", json.dumps(fp.get("response_sampling", {}))),
            ("tasks per request / requests per round", f"{gen.get('tasks_per_request', '?')} / {gen.get('requests_per_round', '?')}"),
            ("structured output", gen.get("structured_output", "?")),
            ("seed tasks (sha256)", f"{fp.get('seeds_sha256', '?')}, {fp.get('seeds_per_prompt', '?')} per prompt"),
            ("novelty threshold (ROUGE-L)", (fp.get("filters") or {}).get("novelty_threshold", "?")),
            ("seed", fp.get("seed", "?")),
        ]),
        "",
        "Prompt templates (sha256): " + ", ".join(f"`{k}` {v}" for k, v in (fp.get("templates") or {}).items()),
    ]
    return "\n".join(lines)


def _samples(inp: InstructionCardInputs, n: int = 5, seed: int = 0) -> str:
    rng = random.Random(seed)
    kept = rng.sample(inp.rows, min(n, len(inp.rows)))
    parts = ["**Kept** (random):", ""]
    parts.append(R.md_table(["type", "instruction", "input", "output"],
                            [(r.get("type"), R.clip(r.get("instruction"), 200), R.clip(r.get("input"), 120),
                              R.clip(r.get("output"), 300)) for r in kept]) if kept else "none yet")
    failed = rng.sample(inp.responses_failed, min(n, len(inp.responses_failed)))
    parts += ["", "**Replies rejected by a gate** (random):", ""]
    parts.append(R.md_table(["gate", "why", "instruction", "reply"],
                            [(f.get("gate"), R.clip(f.get("reason"), 120), R.clip((f.get("task") or {}).get("instruction"), 150),
                              R.clip(f.get("raw_text"), 300)) for f in failed]) if failed else "none")
    tasks = [t for t in inp.tasks_rejected if t.get("task")]
    picked = rng.sample(tasks, min(n, len(tasks)))
    parts += ["", "**Tasks rejected** (random):", ""]
    parts.append(R.md_table(["reason", "instruction", "input"],
                            [(t.get("reason"), R.clip(t["task"].get("instruction"), 200), R.clip(t["task"].get("input"), 120))
                             for t in picked]) if picked else "none")
    return "\n".join(parts)


def instruction_card(inp: InstructionCardInputs, plots: bool = True) -> R.Card:
    """The card of one run (pure: text and PNG bytes)."""
    st = instruction_stats(inp)
    fp, summ = inp.fingerprint, inp.summary or {}
    card = R.Card(title=f"MedInstruct-style dataset: {st['rows']} rows from {fp.get('teacher_model', '?')}")
    card.metadata = {
        "language": ["en"],
        "license": "other",
        "task_categories": ["text-generation", "question-answering"],
        "tags": ["medical", "synthetic", "instruction-tuning", "medforge"],
        "size_categories": [_size_category(st["rows"])],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "dataset/medinstruct.jsonl"}]}],
        "medforge": {"job": "generate", "final": inp.final, "teacher": fp.get("teacher_model"),
                     "templates": fp.get("templates")},
    }
    state = "final" if inp.final else "in progress (rewritten after every round and response chunk)"
    card.notes.append(f"Made by medforge's generate job; this card is {state}.")
    P = R.plotter(card, plots)  # noqa: N806 - P(name, draw): a plot's marker, "" when there are no plots

    overview = [R.md_table(["", ""], [
        ("rows in the dataset", st["rows"]),
        ("tasks accepted / target", f"{summ.get('accepted_tasks', '?')} / {summ.get('target_tasks', '?')}" if summ else "run in progress"),
        ("rounds", summ.get("rounds", max(st["task_rejections_by_round"], default=-1) + 1)),
        ("tasks rejected", sum(st["task_rejections"].values())),
        ("replies rejected by the reply gates", sum(st["response_rejections"].values())),
        ("replies asked twice (retried)", summ.get("responses_retried", "?")),
        ("truncated replies kept (marked `response_truncated`)", st["truncated_kept"]),
        ("wall time (s)", summ.get("wall_time_s", "?")),
    ])]
    if inp.answered is not None:
        overview.append(f"\nReplies saved so far: {inp.answered}.")
    card.sections.append(("Overview", "\n".join(overview)))

    comp = []
    for key, label, top in (("by_type", "type", None), ("by_topic", "topic", 20), ("by_view", "viewpoint", None),
                            ("by_difficulty", "difficulty", None)):
        comp += [f"### By {label}", "", P(f"{key}", lambda: R.barh_png(st[key], f"rows by {label}", top=top or 20)), "",
                 R.counts_table(st[key], label, top=top), ""]
    card.sections.append(("Composition", "\n".join(comp)))

    lengths = ["Words per field (whitespace-separated).", "",
               P("lengths", lambda: R.hist_png(st["lengths"], "length of instruction, input and output", "words")), "",
               R.md_table(["field", "rows", "min", "median", "p90", "max", "mean"],
                          [(k, *R.quantiles(v).values()) for k, v in st["lengths"].items()])]
    card.sections.append(("Lengths", "\n".join(lengths)))

    by_round = {r: dict(c) for r, c in st["task_rejections_by_round"].items()}
    rej = ["### Tasks (before answering)", "",
           P("task_rejections", lambda: R.barh_png(st["task_rejections"], "tasks rejected, by reason")), "",
           R.counts_table(st["task_rejections"], "reason") if st["task_rejections"] else "none", "",
           P("task_rejections_by_round", lambda: R.stacked_png(by_round, "tasks rejected per round", "round")), "",
           "### Replies (the reply gates: docs/pipeline.md)", "",
           P("response_rejections", lambda: R.barh_png(st["response_rejections"], "replies rejected, by gate")), "",
           R.counts_table(st["response_rejections"], "gate") if st["response_rejections"] else "none"]
    card.sections.append(("Rejections", "\n".join(rej)))

    seeds_note = "and the seed tasks" if inp.seed_instructions else "(the seed tasks are not in the run folder)"
    nov = [f"Each kept task's highest ROUGE-L F1 to every other kept task {seeds_note}, exact "
           f"({st['novelty_exact_n']} of {st['rows']} kept tasks scored"
           + (", a random sample" if st["novelty_exact_n"] < st["rows"] else "") + "), as Self-Instruct and AlpaCare "
           "plot it; beside it the scores of the tasks the novelty filter rejected (exact, > the threshold). The "
           "filter's own score per kept row (`novelty_best_rouge_l`) is a lower bound: it prunes pairs that cannot "
           "exceed the threshold (docs/novelty.md).", "",
           P("novelty", lambda: R.hist_png({"kept": st["novelty_exact"], "rejected (novelty)": st["novelty_rejected"]},
                                           "highest ROUGE-L to the pool", "ROUGE-L F1", bins=20, range_=(0.0, 1.0))), "",
           R.md_table(["", "n", "min", "median", "p90", "max", "mean"],
                      [("kept (exact)", *R.quantiles(st["novelty_exact"]).values()),
                       ("kept (the filter's lower bound)", *R.quantiles(st["novelty_kept"]).values()),
                       ("rejected (novelty)", *R.quantiles(st["novelty_rejected"]).values())])]
    card.sections.append(("Novelty profile", "\n".join(nov)))

    top_verbs = st["verbs"].most_common(20)
    pairs = Counter({f"{v} {n}": c for v, ns in st["verb_nouns"].items() for n, c in ns.items()})
    verbs = [f"Method: {VERB_METHOD}. {st['no_root_verb']} of {st['rows']} instructions do not open with an "
             "imperative verb (questions, statements).", "",
             P("root_verbs", lambda: R.barh_png(dict(top_verbs), "top root verbs")), "",
             P("verb_nouns", lambda: R.barh_png(pairs, "top verb + first noun pairs", top=25)), "",
             R.md_table(["verb", "rows", "top first nouns"],
                        [(v, c, ", ".join(f"{n} ({k})" for n, k in st["verb_nouns"].get(v, Counter()).most_common(4)))
                         for v, c in top_verbs])]
    card.sections.append(("Root verbs and first nouns", "\n".join(verbs)))
    card.sections.append(("Samples", _samples(inp)))
    card.sections.append(("Provenance", _provenance(inp)))
    card.sections.append(("Files", "- `dataset/medinstruct.jsonl`, `dataset/parquet/`: the data (Alpaca columns "
                          "plus type, topic, view, difficulty, novelty and provenance per row)\n"
                          "- `quarantine/tasks_rejected.jsonl`, `quarantine/responses_failed.jsonl`: what was "
                          "rejected, with the reason and the teacher's text\n- `summary.json`, `run.json`"))
    return card


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def inputs_from_run(run: Any, responses: dict[str, dict[str, Any]] | None) -> InstructionCardInputs:
    """Mid-run inputs from an :class:`~medforge.generate.pipeline.InstructionRun`'s state (tasks accepted
    so far; replies saved so far)."""
    rows, failed = [], []
    for task in run.accepted:
        resp = (responses or {}).get(task["id"])
        if resp is not None and resp.get("output") is None:
            failed.append({"task_id": task["id"], "gate": resp.get("gate") or "other", "reason": resp.get("error", ""),
                           "raw_text": resp.get("raw_text", ""), "task": task})
            continue
        rows.append({**{k: task.get(k) for k in ("instruction", "type", "topic", "view", "difficulty",
                                                   "novelty_best_rouge_l", "id")},
                     "input": dataset_input(task["input"]),
                     "output": (resp or {}).get("output") or "",
                     "response_truncated": bool((resp or {}).get("truncated"))})
    return InstructionCardInputs(rows=rows, tasks_rejected=list(run.rejected), responses_failed=failed,
                                 fingerprint=run.fingerprint(), final=False,
                                 answered=None if responses is None else len(responses))


def write_instruction_card(run: Any, responses: dict[str, dict[str, Any]] | None = None, final: bool = False) -> Path:
    """Write ``card.md`` / ``card.html`` into the run folder: at the end (``final``) from the folder's
    files, which are then written; mid-run from the run's state."""
    root = Path(run.root)
    inp = inputs_from_folder(root) if final else inputs_from_run(run, responses)
    inp.seed_instructions = [s["instruction"] for s in run.seedset.seeds]
    return R.write_card(root, instruction_card(inp))
