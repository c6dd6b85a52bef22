"""The instruction dataset card: pure builders from a run folder's files to markdown, HTML and plots."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from medforge.cards import render as R
from medforge.cards.instructions import inputs_from_folder, instruction_card, instruction_stats, rejections_by_round
from medforge.cards.verbs import verb_noun
from medforge.io import atomic_write_jsonl

PNG = b"\x89PNG\r\n\x1a\n"


def _row(i: int, type_: str, instruction: str, output: str, input_: str = "", truncated: bool = False) -> dict:
    return {"id": f"r{i // 3:05d}-q0000-t{i % 3:02d}", "instruction": instruction, "input": input_, "output": output,
            "type": type_, "topic": ["Cardiology", "Endocrinology"][i % 2], "view": "Medical student",
            "difficulty": 1 + i % 5, "novelty_best_rouge_l": 0.1 * (i % 7), "novelty_nearest_id": "seed_1",
            "response_truncated": truncated, "provenance": {"teacher_model": "teacher-x"}}


def make_run_folder(root: Path) -> None:
    rows = [
        _row(0, "Open Q&A", "Explain the mechanism of metformin.", "It lowers hepatic glucose output."),
        _row(1, "Open Q&A", "Explain the causes of anemia in pregnancy.", "Iron deficiency is the commonest."),
        _row(2, "Summarization", "Summarize the following discharge note.", "Admitted with pneumonia; improved.",
             input_="Patient admitted with community-acquired pneumonia, treated with amoxicillin, improved."),
        _row(3, "Open Q&A", "What are the symptoms of gout?", "Sudden painful swollen joint, often the big toe."),
        _row(4, "Classification", "Classify these drugs by class.", "Lisinopril: ACE inhibitor.", truncated=True),
    ]
    atomic_write_jsonl(root / "dataset" / "medinstruct.jsonl", rows)
    rejected = [
        {"request_id": "r00000-q0001", "seed_ids": [], "reason": "novelty",
         "task": {"instruction": "Explain metformin's mechanism.", "input": "<noinput>", "novelty_best_rouge_l": 0.83}},
        {"request_id": "r00000-q0002", "seed_ids": [], "reason": "denylist",
         "task": {"instruction": "Draw a diagram of the heart.", "input": "<noinput>"}},
        {"request_id": "r00001-q0000", "seed_ids": [], "reason": "parse_error", "detail": "bad json", "raw_text": "{"},
        {"request_id": "r00001-q0003", "seed_ids": [], "reason": "denylist",
         "task": {"instruction": "Plot the growth chart.", "input": "<noinput>"}},
    ]
    atomic_write_jsonl(root / "quarantine" / "tasks_rejected.jsonl", rejected)
    failed = [
        {"task_id": "t9", "gate": "repetition", "reason": "repetition: sentence said 5 times", "attempts": 2,
         "raw_text": "This is a medical advice. " * 5, "task": {"instruction": "Explain healthy living.", "input": "<noinput>"}},
        {"task_id": "t8", "gate": "refusal", "reason": "refusal: 'As an AI'", "attempts": 2,
         "raw_text": "As an AI language model I cannot.", "task": {"instruction": "Explain the dose of aspirin.", "input": "<noinput>"}},
    ]
    atomic_write_jsonl(root / "quarantine" / "responses_failed.jsonl", failed)
    (root / "run.json").write_text(json.dumps({
        "teacher_kind": "openai", "teacher_model": "teacher-x", "seeds_sha256": "abc", "seeds_per_prompt": 3,
        "generation": {"tasks_per_request": 10, "requests_per_round": 4, "structured_output": True,
                       "sampling": {"temperature": 1.0, "max_tokens": 3072}},
        "filters": {"novelty_threshold": 0.7}, "response_sampling": {"temperature": 1.0, "max_tokens": 300},
        "seed": 0, "templates": {"instruction_generation.jinja": "1234abcd"}}))
    (root / "summary.json").write_text(json.dumps({"accepted_tasks": 7, "target_tasks": 10, "rounds": 2,
                                                   "responses_retried": 2, "wall_time_s": 12.5}))


def test_stats_from_a_run_folder(tmp_path):
    make_run_folder(tmp_path)
    inp = inputs_from_folder(tmp_path)
    assert inp.final and len(inp.rows) == 5
    st = instruction_stats(inp)
    assert st["by_type"] == {"Open Q&A": 3, "Summarization": 1, "Classification": 1}
    assert st["by_difficulty"]["1"] == 1 and sum(st["by_difficulty"].values()) == 5
    assert st["task_rejections"] == {"novelty": 1, "denylist": 2, "parse_error": 1}
    assert {r: dict(c) for r, c in st["task_rejections_by_round"].items()} == {
        0: {"novelty": 1, "denylist": 1}, 1: {"parse_error": 1, "denylist": 1}}
    assert st["response_rejections"] == {"repetition": 1, "refusal": 1}
    assert st["truncated_kept"] == 1
    assert st["lengths"]["input"] == [9]  # only rows that have an input
    assert st["novelty_rejected"] == [0.83]
    assert st["verbs"]["explain"] == 2 and st["verb_nouns"]["explain"]["mechanism"] == 1
    assert st["no_root_verb"] == 1  # "What are ..."


def test_card_markdown_html_and_plots(tmp_path):
    make_run_folder(tmp_path)
    card = instruction_card(inputs_from_folder(tmp_path))
    md_path = R.write_card(tmp_path, card)
    md = md_path.read_text()
    assert md.startswith("---\n")
    meta = yaml.safe_load(md.split("---\n")[1])
    assert meta["task_categories"] and meta["medforge"]["teacher"] == "teacher-x" and meta["medforge"]["final"] is True
    for heading in ("Composition", "Lengths", "Rejections", "Novelty profile", "Root verbs and first nouns",
                    "Samples", "Provenance"):
        assert f"## {heading}" in md
    assert "This is a medical advice." in md and "repetition" in md  # a rejected sample with its gate
    assert "1234abcd" in md and "teacher-x" in md
    pngs = sorted((tmp_path / R.PLOTS_DIR).glob("*.png"))
    names = {p.stem for p in pngs}
    assert {"by_type", "lengths", "task_rejections", "task_rejections_by_round", "response_rejections", "novelty",
            "root_verbs"} <= names
    assert all(p.read_bytes().startswith(PNG) for p in pngs)
    for name in names:  # every plot is linked from both renderings
        assert f"{R.PLOTS_DIR}/{name}.png" in md
        assert f'src="{R.PLOTS_DIR}/{name}.png"' in (tmp_path / "card.html").read_text()
    assert "{{plot:" not in md and "{{plot:" not in (tmp_path / "card.html").read_text()


def test_card_without_plots_has_no_broken_links(tmp_path):
    make_run_folder(tmp_path)
    card = instruction_card(inputs_from_folder(tmp_path), plots=False)
    assert not card.plots
    assert "{{plot:" not in R.to_markdown(card) and ".png" not in R.to_markdown(card)


def test_an_empty_run_still_gets_a_card(tmp_path):
    (tmp_path / "run.json").write_text("{}")
    card = instruction_card(inputs_from_folder(tmp_path))
    md = R.to_markdown(card)
    assert "0 rows" in md and "run in progress" in md


def test_exact_novelty_profile():
    from medforge.cards.instructions import novelty_profile

    texts = ["explain the mechanism of metformin", "explain the mechanism of insulin", "list symptoms of gout"]
    scores, n = novelty_profile(texts, ["describe gout"])
    assert n == 3
    assert scores[0] == scores[1] == 0.8  # 4 of 5 tokens in common
    assert scores[2] == round(2 * 1 / (4 + 2), 4)  # "gout" shared with the seed
    sample, n = novelty_profile(texts * 10, [], max_pairs=60)
    assert n == 2 and len(sample) == 2 and all(s == 1.0 for s in sample)  # duplicates score 1
    assert novelty_profile([], ["x"]) == ([], 0)


def test_rejections_by_round_reads_the_request_id():
    recs = [{"request_id": "r00012-q0003", "reason": "x"}, {"reason": "y", "task": {"request_id": "r00002-q0000"}},
            {"reason": "z"}]
    assert {r: dict(c) for r, c in rejections_by_round(recs).items()} == {12: {"x": 1}, 2: {"y": 1}}


def test_verb_noun_heuristic():
    assert verb_noun("Explain the mechanism of action of metformin.") == ("explain", "mechanism")
    assert verb_noun("Please list three common symptoms of gout.") == ("list", "symptoms")
    assert verb_noun("Describe how insulin works.") == ("describe", None)
    assert verb_noun("What are the symptoms of gout?") == (None, None)
    assert verb_noun("Summarize the clinical findings.") == ("summarize", "findings")


def test_markdown_table_escapes_pipes_and_newlines():
    t = R.md_table(["a", "b"], [("x|y", "line1\nline2")])
    assert "x\\|y" in t and "line1 line2" in t
