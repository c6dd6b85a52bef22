"""Typed job results, and how ``run_job`` prints them and maps them to exit codes (no Ray: needs_ray=False)."""

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from medforge.contexts.pipeline import ContextsResult
from medforge.generate.pipeline import GeneratePaths, GenerateResult
from medforge.evaluate.config import EvaluateMCConfig
from medforge.evaluate.freeform import EvaluateResult
from medforge.evaluate.mc import EvaluateMCResult
from medforge.jobs import run_job
from medforge.pipeline.runner import PipelineResult
from medforge.results import EngineRef, JobResult
from medforge.finetune.llm import FinetuneResult
from medforge.finetune.slm import FinetuneMCResult

RESULTS = (GenerateResult, ContextsResult, FinetuneResult, FinetuneMCResult, EvaluateResult, EvaluateMCResult,
           PipelineResult)


def _generate(**over) -> GenerateResult:
    fields = dict(
        output_dir="runs/x", dataset_rows=3, accepted_tasks=4, target_tasks=4, rounds=1, rejected={"rouge": 2},
        responses_failed=1, responses_failed_by_reason={"empty": 1}, responses_retried=0, responses_truncated_kept=0,
        responses_pending=0, generated_tokens_tasks=99, teacher=EngineRef(kind="scripted", model="s"), wall_time_s=1.5,
        reply_gates_cpu_s=0.01, paths=GeneratePaths(jsonl="a.jsonl", parquet="p", quarantine="q", card="card.md"))
    return GenerateResult(**{**fields, **over})


@pytest.mark.parametrize("cls", RESULTS, ids=lambda c: c.__name__)
def test_every_result_has_the_common_fields_and_refuses_undeclared_ones(cls):
    assert issubclass(cls, JobResult)
    assert {"output_dir", "incomplete"} <= set(cls.model_fields)
    with pytest.raises(ValidationError, match="extra"):
        cls.model_validate({**{k: None for k in cls.model_fields}, "not_a_field": 1})


def test_summary_has_incomplete_only_when_set():
    done = _generate()
    assert "incomplete" not in json.loads(done.summary_json()) and "incomplete" not in done.summary()
    assert done.summary()["paths"]["jsonl"] == "a.jsonl" and done.summary()["teacher"] == {"kind": "scripted", "model": "s"}
    left = _generate(incomplete="2 task(s) have no response yet")
    assert json.loads(left.summary_json())["incomplete"] == "2 task(s) have no response yet"


def test_evaluate_result_does_not_print_its_full_report():
    r = EvaluateResult(output_dir="o", model="m", judge="j", n_items=2,
                       judge_calls={"requested": 4, "cached": 0, "made": 4, "errors": 0},
                       references={"ref": {"win_rate": 0.5, "ci95": [0.1, 0.9], "lc_win_rate": None, "n_scored": 2}},
                       report_path="o/report.json", report={"quarantine": {"big": list(range(100))}})
    printed = json.loads(r.summary_json())
    assert "report" not in printed and printed["references"]["ref"]["win_rate"] == 0.5
    assert r.report["quarantine"]["big"][-1] == 99


def _mc_config(tmp_path: Path) -> Path:
    run = tmp_path / "fs"
    run.mkdir()
    (run / "summary.json").write_text("{}")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"few_shot_runs: [{run}]\noutput:\n  dir: {tmp_path / 'out'}\n")
    return cfg


@pytest.mark.parametrize("incomplete,code", [(None, 0), ("1 chunk left pending", 3)])
def test_run_job_prints_the_result_and_exits_3_when_incomplete(tmp_path, capsys, incomplete, code):
    seen = []

    def run(cfg: EvaluateMCConfig) -> JobResult:
        seen.append(cfg)
        return _generate(output_dir=cfg.output.dir, incomplete=incomplete)

    rc = run_job(["--config", str(_mc_config(tmp_path))], prog="t", model=EvaluateMCConfig, description="d", example="e",
                 run=run, needs_ray=False)
    out, err = capsys.readouterr()
    assert rc == code and seen[0].output.dir == str(tmp_path / "out")
    printed = json.loads(out)
    assert printed["output_dir"] == str(tmp_path / "out") and printed["dataset_rows"] == 3
    assert (f"t: incomplete: {incomplete}" in err) == bool(incomplete)
