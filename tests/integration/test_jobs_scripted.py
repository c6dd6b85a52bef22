"""The jobs' own logic on the scripted engine: real Ray Data streams, no model.

The scripted engine (:mod:`medforge.engines.scripted`) replies by rule, a pure function of the
request, so a rerun gets the same replies: resume, quarantine, pending rows, budgets, the
breaker and caching are checked here in seconds, on one local Ray shared by the module (and by
the next modules that ask for ``shared_ray``). What only a real engine shows (vLLM, guided
decoding, Serve LLM) stays in the modules of those engines.

The instruction job is also run as the real entry script, killed twice (mid-rounds and
mid-responses) and resumed: its output must equal an uninterrupted replay.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from jobutils import JOB, kill_group, read_jsonl, run_job, start_job, wait_for, wait_for_text

from medforge.config.base import load_config
from medforge.contexts.config import ContextsConfig
from medforge.contexts.pipeline import run_contexts
from medforge.generate.config import GenerateConfig
from medforge.generate.pipeline import InstructionRun, run_generate
from medforge.generate.seeds import load_seeds
from medforge.engines.breaker import CircuitOpen, circuit_message
from medforge.io import RunConfigMismatch

# The response pass's system prompt (generate/templates/response_system.jinja): only response requests match.
RESPONSE_PROMPT = "You are a medical expert with broad clinical knowledge"
HUGE_MARKER = "The patient reported chest pain. The patient reported chest pain."
TOO_LONG = "This model's maximum context length is 2048 tokens; the prompt is longer than the maximum model length"


def _generate_config(out, target=20, rules=(), **over) -> GenerateConfig:
    cfg = {
        "engine": {"kind": "scripted", "model": "scripted-teacher", "batch_size": 4, "rules": list(rules)},
        "generation": {"tasks_per_request": 4, "requests_per_round": 4, "max_instruction_chars": 160,
                       "max_input_chars": 400},
        "responses": {"chunk_size": 8},
        "budget": {"target_tasks": target, "max_rounds": 12},
        "output": {"dir": str(out)},
    }
    for key, value in over.items():
        node = cfg
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return GenerateConfig(**cfg)


def _dataset(out) -> list[dict]:
    return read_jsonl(out / "dataset" / "medinstruct.jsonl")


@pytest.fixture(scope="module")
def uninterrupted(shared_ray, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen_uninterrupted")
    summary = run_generate(_generate_config(out))
    return out, summary


def test_generation_reaches_its_target_with_provenance_and_reasons(uninterrupted):
    out, summary = uninterrupted
    rows = _dataset(out)
    failed = read_jsonl(out / "quarantine" / "responses_failed.jsonl")
    assert summary.accepted_tasks == 20 == len(rows) + len(failed) == summary.dataset_rows + summary.responses_failed
    assert len({r["id"] for r in rows}) == len(rows) and all(r["output"].strip() for r in rows)
    assert all(r["provenance"]["teacher_engine"] == "scripted" and r["provenance"]["teacher_model"] == "scripted-teacher"
               for r in rows)
    assert all(r["provenance"]["generation_sampling"]["seed"] is not None for r in rows)  # seeds reach this engine
    rejected = read_jsonl(out / "quarantine" / "tasks_rejected.jsonl")
    assert all(r["reason"] for r in rejected) and sum(summary.rejected.values()) == len(rejected)


def test_a_resumed_run_equals_an_uninterrupted_one(uninterrupted, tmp_path):
    """A smaller target first (the run ends early, allowed to grow), its last round lost as in a kill,
    then the full target: the same dataset, byte for byte in content, as one uninterrupted run."""
    out_a, _ = uninterrupted
    out = tmp_path / "run"
    first = run_generate(_generate_config(out, target=8))
    assert first.accepted_tasks == 8 and first.rounds >= 1
    rounds = sorted((out / "raw").glob("round_*.jsonl"))
    rounds[-1].unlink()  # killed before the round was saved: it is generated again, with the same seeds
    answered = {r["task_id"] for p in (out / "responses").glob("part_*.jsonl") for r in read_jsonl(p)}
    run_generate(_generate_config(out, target=20))
    assert _dataset(out) == _dataset(out_a)
    resp_ids = [r["task_id"] for p in sorted((out / "responses").glob("part_*.jsonl")) for r in read_jsonl(p)]
    assert len(resp_ids) == len(set(resp_ids)) == 20 and answered <= set(resp_ids)  # none answered twice


def test_the_token_budget_stops_generation(shared_ray, tmp_path):
    summary = run_generate(_generate_config(tmp_path / "run", target=1000, **{"budget.max_generated_tokens": 300,
                                                                                    "responses.enabled": False}))
    assert summary.generated_tokens_tasks >= 300 and summary.accepted_tasks < 1000
    per_round = [sum(r["num_generated_tokens"] for r in read_jsonl(p))
                 for p in sorted((tmp_path / "run" / "raw").glob("round_*.jsonl"))]
    assert len(per_round) == summary.rounds and sum(per_round[:-1]) < 300  # stopped at the first round over it


def test_a_revoked_key_trips_the_breaker_before_anything_is_saved(shared_ray, tmp_path):
    cfg = _generate_config(tmp_path / "run", rules=[{"match": ".", "error": "401 Unauthorized: invalid api key"}])
    with pytest.raises(CircuitOpen, match=r"8 task-generation requests in a row failed .*401 unauthorized"):
        run_generate(cfg)
    assert list((tmp_path / "run" / "raw").glob("round_*.jsonl")) == []


def test_failed_responses_stay_pending_and_a_rerun_completes_them(uninterrupted, tmp_path):
    out_a, _ = uninterrupted
    out = tmp_path / "run"
    down = [{"match": RESPONSE_PROMPT, "error": "503 Service Unavailable"}]
    summary = run_generate(_generate_config(out, rules=down, **{"engine.breaker": {"max_consecutive_failures": 1000}}))
    assert summary.responses_pending == 20 and summary.dataset_rows == 0 and summary.incomplete
    assert read_jsonl(out / "quarantine" / "responses_failed.jsonl") == []  # pending is not quarantined
    summary = run_generate(_generate_config(out))  # the endpoint is back
    assert summary.responses_pending == 0 and _dataset(out) == _dataset(out_a)


def _seed_file(tmp_path) -> str:
    """Nine built-in seeds and one whose input the (scripted) engine refuses as over its context:
    about a third of the requests show it."""
    seeds = load_seeds(None).seeds[:9] + [{
        "id": "huge", "type": "Summarization", "topic": "Cardiology", "view": "Physician", "difficulty": 3,
        "instruction": "Summarize this very long note.", "input": "The patient reported chest pain. " * 20}]
    seed_file = tmp_path / "seeds.jsonl"
    seed_file.write_text("".join(json.dumps(s) + "\n" for s in seeds))
    return str(seed_file)


TOO_LONG_RULE = {"match": re.escape(HUGE_MARKER), "error": TOO_LONG}
PATIENT_BREAKER = {"max_consecutive_fatal": 1000, "max_consecutive_failures": 1000}


def test_a_prompt_over_the_context_length_is_quarantined_not_retried(shared_ray, tmp_path):
    cfg = _generate_config(tmp_path / "run", rules=[TOO_LONG_RULE], **{"seeds.path": _seed_file(tmp_path),
                                                                "responses.enabled": False,
                                                                "engine.breaker": PATIENT_BREAKER})
    summary = run_generate(cfg)
    raw = [r for p in sorted((tmp_path / "run" / "raw").glob("round_*.jsonl")) for r in read_jsonl(p)]
    assert any("huge" in r["seed_ids"] for r in raw)
    assert all(bool(r["engine_error"]) == ("huge" in r["seed_ids"]) for r in raw)  # exactly those, none else
    rejected = read_jsonl(tmp_path / "run" / "quarantine" / "tasks_rejected.jsonl")
    too_long = [r for r in rejected if r["reason"] == "engine_error"]
    assert len(too_long) == sum("huge" in r["seed_ids"] for r in raw)
    assert all("huge" in r["seed_ids"] and "context length" in r["detail"] for r in too_long)
    assert summary.accepted_tasks == 20
    assert all("huge" not in r["provenance"]["seed_ids"] for r in _dataset(tmp_path / "run"))


# ------------------------------------------------------------------ contexts
VIGNETTES = Path(__file__).parents[1] / "data" / "phi_vignettes.jsonl"


def _contexts(out, rules=()) -> ContextsConfig:
    return ContextsConfig(
        engine={"kind": "scripted", "model": "scripted-context", "batch_size": 2, "rules": list(rules),
                 "breaker": {"max_consecutive_failures": 1000}},
        input={"path": str(VIGNETTES)}, keyword_concurrency=[1, 1],
        output={"dir": str(out), "chunk_rows": 2, "format": "jsonl"})


def _context_rows(out) -> dict[str, dict]:
    return {r["id"]: r for p in sorted((out / "out").glob("part-*.jsonl")) for r in read_jsonl(p)}


def test_contexts_quarantine_pending_chunks_and_resume(shared_ray, tmp_path):
    """A request the endpoint refuses (400) is quarantined; one it could not answer (503) leaves
    its chunk pending, and the rerun fills exactly that chunk: the result equals a clean run."""
    vignettes = [json.loads(x) for x in VIGNETTES.read_text().splitlines() if x.strip()]
    bad, down = vignettes[1], vignettes[4]
    rules = [{"match": re.escape(bad["options"]["B"]), "error": "400 Bad Request: invalid request"},
             {"match": re.escape(down["options"]["C"]), "error": "503 Service Unavailable"}]
    clean = run_contexts(_contexts(tmp_path / "clean"))
    assert clean.rows_with_context == len(vignettes) and clean.rows_quarantined == 0
    out = tmp_path / "run"
    first = run_contexts(_contexts(out, rules))
    assert first.chunks_pending == 1 and first.incomplete
    q = [r for p in (out / "quarantine").glob("part-*.jsonl") for r in read_jsonl(p)]
    assert [r["id"] for r in q] == [bad["id"]] and q[0]["reason"].startswith("engine error: 400")
    assert down["id"] not in _context_rows(out)
    written = {p.name: p.read_bytes() for p in (out / "out").glob("part-*.jsonl")}
    second = run_contexts(_contexts(out))  # the endpoint is back; the refused request stays quarantined
    assert second.chunks_this_run == 1 and second.chunks_pending == 0
    for name, data in written.items():  # finished chunks were not redone
        assert (out / "out" / name).read_bytes() == data
    rows, clean_rows = _context_rows(out), _context_rows(tmp_path / "clean")
    assert set(rows) == set(clean_rows) - {bad["id"]}
    assert all(rows[i]["overall_context"] == clean_rows[i]["overall_context"] for i in rows)
    assert all(r["teacher_engine"] == "scripted" for r in rows.values())


def test_contexts_every_prompt_over_the_context_length_stops_the_job_by_the_breaker(shared_ray, tmp_path):
    """Moved here from the vLLM module (issue 13): every request is refused as over the context.
    The breaker stops the job (run_job maps the trip to exit 3: tests/unit/test_jobs.py) naming the
    cause and the fix, instead of spinning on it, and the rows are quarantined with the reason.
    vLLM's own refusal text reaching the quarantine is checked in test_generate_small.py."""
    out = tmp_path / "run"
    cfg = _contexts(out, [{"match": ".", "error": TOO_LONG}])  # max_consecutive_fatal: its default, 8
    assert cfg.engine.breaker.max_consecutive_fatal == 8
    with pytest.raises(Exception) as info:  # in the driver, or wrapped by a Ray task: as run_job sees it
        run_contexts(cfg)
    message = circuit_message(info.value)
    assert message and "context length" in message and "max_model_len" in message, info.value
    assert _context_rows(out) == {}  # no row got a context
    q = [r for p in (out / "quarantine").glob("part-*.jsonl") for r in read_jsonl(p)]
    assert q and all("maximum context length" in r["reason"] for r in q), q[:2]


# ------------------------------------------------------------------ the real job script, killed twice
def _job_config(tmp_path, out) -> str:
    """The killed run's config: a slow scripted teacher (0.25 s a request), so kills land mid-stream."""
    cfg = {
        "engine": {"kind": "scripted", "batch_size": 4, "latency_s": 0.25, "rules": [TOO_LONG_RULE],
                    "breaker": PATIENT_BREAKER},
        "seeds": {"path": _seed_file(tmp_path)},
        "generation": {"tasks_per_request": 4, "requests_per_round": 4, "max_instruction_chars": 160,
                       "max_input_chars": 400},
        # MC tasks without options stay in (as in configs/generate/local_tiny.yaml), so the
        # structured multiple-choice replies are exercised
        "filters": {"task_checks": False},
        "responses": {"chunk_size": 8},
        "budget": {"target_tasks": 30, "max_rounds": 12},
        "output": {"dir": str(out)},
        "ray_num_cpus": 2,
    }
    path = tmp_path / "scripted.yaml"
    path.write_text("# python ray_jobs/generate.py --config scripted.yaml\n"
                    "# ray job submit --working-dir . -- python ray_jobs/generate.py --config scripted.yaml\n"
                    + yaml.safe_dump(cfg))
    return str(path)


def test_job_killed_twice_and_resumed_equals_its_replay(tmp_path):
    """Moved here from the vLLM module: kill during rounds, kill during responses, resume to the end."""
    out, logs = tmp_path / "run", tmp_path
    cfg_path = _job_config(tmp_path, out)
    args = [str(JOB), "--config", cfg_path]
    proc = start_job(args, logs / "log1.txt")
    wait_for((out / "raw", "round_00001.jsonl"), proc)
    kill_group(proc)
    saved = {p.name: p.read_bytes() for p in (out / "raw").glob("round_*.jsonl")}
    assert saved and not (out / "summary.json").exists()
    proc = start_job(args, logs / "log2.txt")
    wait_for_text(logs / "log2.txt", "responses: 0 already answered, 30 to go", proc)
    wait_for((out / "responses", "part_*.jsonl"), proc)
    kill_group(proc)
    assert not (out / "summary.json").exists(), "the second kill must land before the run finished"
    answered = {r["task_id"] for p in (out / "responses").glob("part_*.jsonl") for r in read_jsonl(p)}
    run_job(args, logs / "log3.txt")
    log3 = (logs / "log3.txt").read_text()

    summary = json.loads((out / "summary.json").read_text())
    rows, failed = _dataset(out), read_jsonl(out / "quarantine" / "responses_failed.jsonl")
    assert summary["accepted_tasks"] == 30 and len(rows) + len(failed) == 30
    for r in rows:
        assert set(r) >= {"instruction", "input", "output", "type", "topic", "view", "difficulty", "provenance"}
        assert 1 <= r["difficulty"] <= 5 and r["novelty_best_rouge_l"] <= 0.7
        assert r["provenance"]["teacher_engine"] == "scripted" and len(r["provenance"]["seed_ids"]) == 3
        assert "huge" not in r["provenance"]["seed_ids"]
    mc = [r for r in rows if r["type"] in ("Multiple-choice Q&A", "USMLE-style Q&A")]
    assert mc and all(r["output"].rstrip().endswith(").") and "The answer is (" in r["output"] for r in mc)
    import pyarrow.parquet as pq

    assert sorted(pq.read_table(out / "dataset" / "parquet").column("id").to_pylist()) == sorted(r["id"] for r in rows)
    rejected = read_jsonl(out / "quarantine" / "tasks_rejected.jsonl")
    too_long = [r for r in rejected if r["reason"] == "engine_error"]
    assert too_long and all("huge" in r["seed_ids"] for r in too_long)
    # rounds saved before the first kill were kept as they were
    for name, data in saved.items():
        assert (out / "raw" / name).read_bytes() == data, name
    # the accepted set equals an uninterrupted replay of the same generations
    cfg = load_config(GenerateConfig, cfg_path)
    replay = InstructionRun(cfg)
    replay.replay()
    assert sorted([r["id"] for r in rows] + [f["task_id"] for f in failed]) == sorted(t["id"] for t in replay.accepted)
    resp_ids = [r["task_id"] for p in sorted((out / "responses").glob("part_*.jsonl")) for r in read_jsonl(p)]
    assert len(resp_ids) == len(set(resp_ids)) == 30 and answered <= set(resp_ids)
    assert "resuming run" in log3 and f"{len(answered)} already answered" in log3
    # a changed config is refused on resume
    cfg = load_config(GenerateConfig, cfg_path, ["generation.tasks_per_request=5"])
    with pytest.raises(RunConfigMismatch, match="generation"):
        run_generate(cfg)
