"""The model card of a fine-tune export, and the pipeline's evaluation update."""

from __future__ import annotations

import json

import yaml

from medforge.cards.model import INPUTS_FILE, ModelCardInputs, find_dataset_card, model_card, update_with_lineage, write_model_card
from medforge.cards import render as R


def _inputs(tmp_path, kind="llm"):
    data = tmp_path / "gen" / "dataset" / "medinstruct.jsonl"
    data.parent.mkdir(parents=True)
    data.write_text("{}\n")
    (tmp_path / "gen" / "card.md").write_text("---\n---\n# dataset\n")
    return ModelCardInputs(kind=kind, base_model="/models/smollm2-135m-instruct", data=str(data),
                           config={"lora": {"enabled": True, "r": 8}, "optim": {"lr": 1e-3}},
                           history=[{"step": 1, "train_loss": 3.2}, {"step": 2, "train_loss": 2.9},
                                    {"step": 2, "eval_loss": 3.0}],
                           results={"train_loss": 2.9, "step": 2}, dataset_card=find_dataset_card(str(data)))


def test_find_dataset_card_walks_up_from_the_data(tmp_path):
    inp = _inputs(tmp_path)
    assert inp.dataset_card == str(tmp_path / "gen" / "card.md")
    assert find_dataset_card(str(tmp_path / "elsewhere.jsonl")) is None
    assert find_dataset_card("s3://bucket/data.jsonl") is None


def test_llm_model_card(tmp_path):
    inp = _inputs(tmp_path)
    out = tmp_path / "export"
    md = write_model_card(out, inp).read_text()
    assert (out / "README.md").is_file() and (out / INPUTS_FILE).is_file()
    meta = yaml.safe_load(md.split("---\n")[1])
    assert meta["base_model"] == "/models/smollm2-135m-instruct" and meta["library_name"] == "peft"
    assert meta["pipeline_tag"] == "text-generation" and "lora" in meta["tags"] and "model-index" not in meta
    assert str(tmp_path / "gen" / "card.md") in md and "Not evaluated yet" in md and '"lr": 0.001' in md
    assert (out / R.PLOTS_DIR / "train_loss.png").read_bytes().startswith(b"\x89PNG")
    assert f"{R.PLOTS_DIR}/train_loss.png" in md


def test_pipeline_adds_the_evaluation(tmp_path):
    out = tmp_path / "export"
    write_model_card(out, _inputs(tmp_path))
    path = update_with_lineage(out, tmp_path / "lineage.json",
                               {"gpt-4": {"win_rate": 0.31, "ci95": [0.2, 0.4], "n_scored": 20, "base_model_win_rate": 0.25}})
    md = path.read_text()
    meta = yaml.safe_load(md.split("---\n")[1])
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.31
    assert "## Evaluation" in md and "0.31" in md and "Not evaluated yet" not in md and "lineage.json" in md
    assert json.loads((out / INPUTS_FILE).read_text())["evaluation"]["gpt-4"]["win_rate"] == 0.31
    assert update_with_lineage(tmp_path / "no_card", tmp_path / "lineage.json", {}) is None


def test_multiple_choice_card():
    card = model_card(ModelCardInputs(kind="multiple-choice", base_model="minilm", data="train.jsonl", config={},
                                      history=[{"epoch": 1, "train_loss": 1.3}], results={"mean_accuracy": 0.5}),
                      plots=False)
    md = R.to_markdown(card)
    assert "pipeline_tag: multiple-choice" in md and "mean_accuracy" in md and "no dataset card found" in md
