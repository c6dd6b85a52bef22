"""``medforge retry-quarantine`` and the finite default round budget (issue 13)."""

import json

from medforge.io import atomic_write_jsonl, read_jsonl
from medforge.retry_quarantine import cli_main


def test_contexts_chunk_with_matching_reason_is_reopened(tmp_path, capsys):
    root = tmp_path / "ctx"
    (root / "staged").mkdir(parents=True)
    (root / "staged" / "manifest.json").write_text(json.dumps({"chunks": {"0": 2, "1": 2}}))
    for c, reason in ((0, "no context for option(s) B"), (1, "preliminary answer 'Z' is not one of ['A', 'B']")):
        atomic_write_jsonl(root / "quarantine" / f"part-{c:05d}.jsonl", [{"id": f"r{c}", "reason": reason}])
        atomic_write_jsonl(root / "out" / f"part-{c:05d}.jsonl", [{"id": f"ok{c}"}])
    assert cli_main(["--run", str(root), "--reason", "no context", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["chunks_reopened"] == 1
    assert (root / "out" / "part-00000.jsonl").is_file()  # dry run changed nothing
    assert cli_main(["--run", str(root), "--reason", "NO CONTEXT"]) == 0
    assert not (root / "out" / "part-00000.jsonl").exists() and not (root / "quarantine" / "part-00000.jsonl").exists()
    assert (root / "out" / "part-00001.jsonl").is_file()  # other reasons untouched


def test_failed_responses_with_matching_reason_become_pending(tmp_path, capsys):
    root = tmp_path / "gen"
    (root / "responses").mkdir(parents=True)
    (root / "run.json").write_text("{}")
    atomic_write_jsonl(root / "responses" / "part_00000.jsonl", [
        {"task_id": "a", "output": "fine", "error": ""},
        {"task_id": "b", "output": None, "error": "engine error (prompt over the context length): too long"},
        {"task_id": "c", "output": None, "error": "multiple-choice reply is not the requested JSON"},
    ])
    assert cli_main(["--run", str(root), "--reason", "context length"]) == 0
    assert json.loads(capsys.readouterr().out)["rows_matched"] == 1
    assert [r["task_id"] for r in read_jsonl(root / "responses" / "part_00000.jsonl")] == ["a", "c"]


def test_not_a_run_folder(tmp_path, capsys):
    assert cli_main(["--run", str(tmp_path), "--reason", "x"]) == 2
    assert "not a medforge" in capsys.readouterr().err


def test_default_round_budget_is_finite():
    from pathlib import Path

    from medforge.config.base import load_config
    from medforge.generate.config import GenerateConfig
    from medforge.generate.pipeline import max_rounds

    cfg_path = Path(__file__).parents[2] / "configs" / "generate" / "openai_api.yaml"
    cfg = load_config(GenerateConfig, cfg_path, ["budget.max_rounds=null"])
    assert cfg.budget.max_rounds is None
    per_round = cfg.generation.tasks_per_request * cfg.generation.requests_per_round
    bound = max_rounds(cfg)
    assert 20 <= bound < 10 * cfg.budget.target_tasks  # finite, and scales with the target
    assert bound * per_round >= cfg.budget.target_tasks * 10
    cfg = load_config(GenerateConfig, cfg_path, ["budget.max_rounds=7"])
    assert max_rounds(cfg) == 7
