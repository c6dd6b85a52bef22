"""Joining a context run's output back onto the local questions (input of finetune-mc)."""

from __future__ import annotations

import json
from pathlib import Path

from medforge.contexts.attach import attach_contexts, cli_main
from medforge.io import atomic_write_jsonl, read_jsonl


def test_attach_keeps_local_question_and_reports_what_is_left_out(tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        json.dumps({"id": "a", "question": "Fever and cough?", "options": {"A": "flu", "B": "gout"}, "answer": "A"}) + "\n"
        + json.dumps({"question": "No id, no context?", "options": ["x", "y"]}) + "\n"
        + "not json\n", encoding="utf-8")
    atomic_write_jsonl(tmp_path / "run" / "out" / "part-00000.jsonl", [
        {"id": "a", "overall_context": "Viral illness.", "option_contexts": {"A": "fits", "B": "no"}, "keywords": ["fever"]},
    ])
    counts = attach_contexts(questions, tmp_path / "run", tmp_path / "train.jsonl")
    assert counts == {"rows": 1, "without_context": 1, "unreadable": 1}
    (row,) = read_jsonl(tmp_path / "train.jsonl")
    assert row == {"id": "a", "question": "Fever and cough?", "options": {"A": "flu", "B": "gout"}, "answer": "A",
                   "overall_context": "Viral illness.", "option_contexts": {"A": "fits", "B": "no"}}


def test_attach_without_a_run_names_the_fix(tmp_path, capsys):
    (tmp_path / "q.jsonl").write_text("{}\n")
    assert cli_main(["--questions", str(tmp_path / "q.jsonl"), "--contexts", str(tmp_path), "--output",
                     str(tmp_path / "o.jsonl")]) == 2
    assert "contexts run" in capsys.readouterr().out
    assert not (tmp_path / "o.jsonl").exists()


def test_make_synthetic_mc_writes_the_tiny_slm_splits(tmp_path):
    from medforge.config.base import load_config
    from medforge.finetune.config import FinetuneMCConfig
    from medforge.finetune.synthetic import cli_main as synthetic_main

    assert synthetic_main(["--out", str(tmp_path)]) == 0
    sizes = {name: len(list(read_jsonl(tmp_path / f"{name}.jsonl"))) for name in ("train", "dev", "test")}
    assert sizes == {"train": 160, "dev": 40, "test": 80}
    # the tiny config reads exactly these files
    cfg = load_config(FinetuneMCConfig, Path(__file__).parents[3] / "configs/finetune_mc/local_tiny.yaml", [])
    assert cfg.data.train_path.endswith("slm_synthetic/train.jsonl")

