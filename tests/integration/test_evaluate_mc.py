"""Multiple-choice evaluation of an exported SLM (issue 11): accuracy equals a direct computation.

The export is made from the tiny random BERT with :func:`save_mc_export` (the writer fine-tuning
uses; the trained path is covered in test_finetune.py), then scored by the real job script.
The direct computation tokenizes each (question, option [+ contexts]) pair itself and takes the
argmax of the model's logits, without medforge's encoding code.
"""

from __future__ import annotations

import json

import pytest
import yaml

from jobutils import REPO, read_jsonl, run_job

from medforge.io import atomic_write_jsonl
from medforge.mc.encoding import MCFormat
from medforge.mc.scorer import save_mc_export
from medforge.finetune.synthetic import mc_rows


def _direct_predictions(export, rows, use_context):
    import torch
    from transformers import AutoModelForMultipleChoice, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(export)
    model = AutoModelForMultipleChoice.from_pretrained(export).eval()
    preds = []
    for r in rows:
        letters = sorted(r["options"])
        seconds = [r["options"][k] + (f" {r['overall_context']} {r['option_contexts'][k]}" if use_context else "") for k in letters]
        enc = tok([r["question"]] * len(letters), seconds, truncation=True, max_length=48, padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(**{k: v.unsqueeze(0) for k, v in enc.items()}).logits[0]
        preds.append(letters[int(logits.argmax())])
    return preds


def test_mc_eval_of_an_export_matches_direct_computation(tmp_path, tiny_models):
    import torch
    from transformers import AutoModelForMultipleChoice, AutoTokenizer

    torch.manual_seed(0)
    export = tmp_path / "export"
    model = AutoModelForMultipleChoice.from_pretrained(tiny_models["bert"])
    save_mc_export(export, model, AutoTokenizer.from_pretrained(tiny_models["bert"]),
                   MCFormat(max_length=48, use_context=True, num_options=4, labels=list("ABCD")))
    rows = mc_rows(40, seed=5)
    data = tmp_path / "mc.jsonl"
    # generic rows with contexts, one MedMCQA-style bad row and one without an answer
    atomic_write_jsonl(data, [*rows, {"question": "only one option", "options": ["x"], "answer": 0},
                              {"question": rows[0]["question"], "options": rows[0]["options"]}])
    runs = []
    for k, accs in ((20, [0.4, 0.5]), (80, [0.7, 0.8])):
        d = tmp_path / f"fs{k}"
        d.mkdir()
        (d / "summary.json").write_text(json.dumps({"metric": "test_accuracy", "use_context": True, "few_shot": k, "train_rows": 160,
                                                     "seeds": [{"seed": i, "accuracy": a} for i, a in enumerate(accs)]}))
        runs.append(str(d))
    cfg = tmp_path / "mc.yaml"
    cfg.write_text(yaml.safe_dump({"models": {"tiny": str(export)}, "datasets": [{"name": "syn", "path": str(data)}],
                                   "use_context": ["with", "without"], "few_shot_runs": runs, "batch_size": 7,
                                   "device": "cpu", "output_dir": str(tmp_path / "out")}))
    run_job([str(REPO / "ray_jobs" / "evaluate_mc.py"), "--config", str(cfg)], tmp_path / "job.log", timeout=600)

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    preds = read_jsonl(tmp_path / "out" / "predictions.jsonl")
    assert report["quarantined"] == 1 and "only 1 option" in read_jsonl(tmp_path / "out" / "quarantine.jsonl")[0]["reason"]
    for context, use in (("with", True), ("without", False)):
        res = [r for r in report["results"] if r["context"] == context][0]
        direct = _direct_predictions(export, rows, use)
        mine = [p for p in preds if p["context"] == context]
        assert [p["prediction"] for p in mine[:40]] == direct
        expected = sum(d == r["answer"] for d, r in zip(direct, rows, strict=True)) / 40
        assert res["n_rows"] == 41 and res["n_scored"] == 40 and res["accuracy"] == pytest.approx(expected)
        assert mine[40]["answer"] is None and mine[40]["correct"] is None
    fs = report["few_shot"]["with context (test_accuracy)"]
    assert [(p["shots"], round(p["mean_accuracy"], 6)) for p in fs] == [(20, 0.45), (80, 0.75)]
    assert fs[0]["std_accuracy"] == pytest.approx(0.0707107, abs=1e-6)
    for name in ("report.md", "report.html", "mc_accuracy.png", "few_shot.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
