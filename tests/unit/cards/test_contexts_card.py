"""The contexts dataset card, and the reply gates in the contexts parse stage."""

from __future__ import annotations

import json

import numpy as np
import yaml

from medforge.cards import render as R
from medforge.cards.contexts import contexts_card, reason_key, stats_from_folder
from medforge.contexts.pipeline import parse_stage
from medforge.generate.response_checks import ResponseCheckConfig
from medforge.io import atomic_write_jsonl


def _good(i, prelim, answer):
    return {"id": f"q{i}", "row_index": i, "keywords": ["chest pain", "troponin"], "options": {"A": "MI", "B": "GERD"},
            "answer": answer, "overall_context": "Chest pain with a raised troponin points to myocardial injury.",
            "option_contexts": {"A": "Typical of MI.", "B": "Burning pain after meals."}, "preliminary_answer": prelim,
            "redactions": {"phone": 1} if i == 0 else {}, "response_truncated": i == 2}


def make_folder(root):
    atomic_write_jsonl(root / "out" / "part-00000.jsonl", [_good(0, "A", "A"), _good(1, "B", "A")])
    atomic_write_jsonl(root / "out" / "part-00001.jsonl", [_good(2, "A", "A"), _good(3, "A", None)])
    atomic_write_jsonl(root / "quarantine" / "part-00000.jsonl", [
        {"id": "q9", "row_index": 9, "reason": "repetition: sentence said 4 times", "raw_text": "loop loop"}])
    atomic_write_jsonl(root / "quarantine" / "part-00001.jsonl", [
        {"id": "q8", "row_index": 8, "reason": "no overall context", "raw_text": "{}"},
        {"id": "q7", "row_index": 7, "reason": "engine error: prompt too long", "raw_text": ""}])
    (root / "run.json").write_text(json.dumps({"teacher_model": "ctx-teacher", "teacher_kind": "vllm", "prompt_sha256": "beef12",
                                               "generation": {"sampling": {"temperature": 0.0}}}))
    (root / "staged").mkdir()
    (root / "staged" / "manifest.json").write_text(json.dumps({"chunks": {"0": 3, "1": 4}, "rows": 7, "quarantined": 1}))


def test_stats_from_folder(tmp_path):
    make_folder(tmp_path)
    st = stats_from_folder(tmp_path)
    assert (st.chunks, st.rows_ok, st.rows_bad) == (2, 4, 3)
    assert st.reasons == {"repetition": 1, "parse: no overall context": 1, "engine error": 1}
    assert {c: dict(v) for c, v in st.reasons_by_chunk.items()} == {0: {"repetition": 1},
                                                                     1: {"parse: no overall context": 1, "engine error": 1}}
    # 6 replies (the engine error is none); 1 did not parse
    assert abs(st.parse_rate() - 5 / 6) < 1e-9
    assert st.with_answer == 3 and st.prelim_correct == 2 and abs(st.prelim_accuracy() - 2 / 3) < 1e-9
    assert st.truncated_kept == 1 and st.redactions == {"phone": 1}
    assert list(st.option_words) == [3, 4] * 4


def test_contexts_card_renders(tmp_path):
    make_folder(tmp_path)
    card = contexts_card(stats_from_folder(tmp_path), json.loads((tmp_path / "run.json").read_text()),
                         json.loads((tmp_path / "staged" / "manifest.json").read_text()), {"wall_time_s": 3})
    md = R.write_card(tmp_path, card).read_text()
    meta = yaml.safe_load(md.split("---\n")[1])
    assert meta["medforge"]["job"] == "contexts" and meta["medforge"]["prompt_sha256"] == "beef12"
    assert "66.7% of 3 questions" in md and "83.3%" in md and "2 / 2" in md
    assert {p.stem for p in (tmp_path / R.PLOTS_DIR).glob("*.png")} >= {"reasons", "lengths", "reasons_by_chunk"}


def test_reason_key():
    assert reason_key("not_english: 9 non-English function words") == "not_english"
    assert reason_key("engine error: boom") == "engine error"
    assert reason_key("preliminary answer 'Z' is not one of ['A', 'B']") .startswith("parse: ")


def _batch(texts, finish):
    n = len(texts)
    return {"id": np.array([f"q{i}" for i in range(n)], dtype=object), "letters_json": np.array(['["A", "B"]'] * n, dtype=object),
            "engine_error": np.array([""] * n, dtype=object), "generated_text": np.array(texts, dtype=object),
            "finish_reason": np.array(finish, dtype=object), "messages": np.array([None] * n, dtype=object)}


def _reply(overall):
    return json.dumps({"overall_context": overall, "option_contexts": {"A": "Fits.", "B": "Does not fit."},
                       "preliminary_answer": "A"})


def test_parse_stage_gates_the_overall_context():
    good = "Sudden chest pain with sweating in a smoker suggests an acute coronary syndrome."
    texts = [_reply(good), _reply("As an AI language model, I cannot give medical context."),
             _reply("The patient is sick. " * 5), _reply(good)]
    out = parse_stage(_batch(texts, ["stop", "stop", "stop", "length"]), ResponseCheckConfig(retry=False))
    assert out["error"][0] == "" and out["overall_context"][0] == good
    assert out["error"][1].startswith("refusal:") and out["overall_context"][1] == ""
    assert out["error"][2].startswith("repetition:")
    assert out["error"][3].startswith("truncated:")
    kept = parse_stage(_batch(texts, ["stop", "stop", "stop", "length"]),
                       ResponseCheckConfig(retry=False, keep_truncated=True))
    assert kept["error"][3] == "" and kept["response_truncated"] == [False, False, False, True]
    # without checks (as before the gates) every parsed reply is kept
    assert parse_stage(_batch(texts, ["stop"] * 4))["error"] == ["", "", "", ""]
