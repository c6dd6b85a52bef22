"""Test-set loaders, bad input, the call cache and the report files (no Ray)."""

from __future__ import annotations

import json

import pytest

from medforge.config.base import ConfigError
from medforge.evaluate.cache import CallCache, cache_key
from medforge.evaluate.data import MEDINSTRUCT_REFERENCES, load_items, load_test_set
from medforge.evaluate.report import write_freeform_report
from medforge.evaluate.stats import summarize
from medforge.io import atomic_write_jsonl


def test_medinstruct_test_from_shared_data(alpacare_dir):
    items, problems = load_test_set(alpacare_dir / "MedInstruct-test.jsonl", "medinstruct")
    assert not problems and len(items) == 216
    assert all(set(i["references"]) == set(MEDINSTRUCT_REFERENCES) for i in items)
    assert {i["difficulty"] for i in items} == {"1", "2", "3", "4", "5"}
    # AlpaCare's GPT-4 reference file joins by instruction text; iCliniq loads as its own test set
    items = load_items(str(alpacare_dir / "MedInstruct-test.jsonl"), "medinstruct", ["gpt-4-answer"],
                       {"gpt4-file": str(alpacare_dir / "MedInstruct-test_gpt-4_reference.jsonl")})
    assert sum("gpt4-file" in i["references"] for i in items) >= 200
    icl, problems = load_test_set(alpacare_dir / "iCliniq_gpt-4_reference.jsonl", "alpacare")
    assert not problems and len(icl) == 1000 and set(icl[0]["references"]) == {"iCliniq_gpt-4_reference"}
    assert icl[0]["input"] and icl[0]["id"] == "0"


def test_bad_test_files_fail_before_anything_runs(tmp_path):
    p = tmp_path / "t.jsonl"
    atomic_write_jsonl(p, [{"id": 1, "instruction": "a", "gpt-4-answer": "x"}, {"id": 1, "instruction": "b", "gpt-4-answer": "y"},
                           {"instruction": "no id"}])
    with pytest.raises(ConfigError) as e:
        load_items(str(p), "medinstruct", None, {})
    text = str(e.value)
    assert "line 3 lacks ['id']" in text and "duplicate ids ['1']" in text
    p.write_text('{"instruction": "q", "answer": "x"}\n{not json\n')
    with pytest.raises(ConfigError) as e:
        load_items(str(p), "generic", None, {})
    assert "line 2 is not valid JSON" in str(e.value)
    p.write_text('{"instruction": "q", "answer": "x"}\n')
    with pytest.raises(ConfigError, match="no row has any of the reference fields"):
        load_items(str(p), "generic", None, {})
    with pytest.raises(ConfigError, match="file not found"):
        load_items(str(tmp_path / "nope.jsonl"), "generic", None, {})
    p.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_items(str(p), "generic", None, {})


def test_missing_references_are_left_out_per_reference(tmp_path):
    p = tmp_path / "t.jsonl"
    atomic_write_jsonl(p, [{"id": "a", "instruction": "q1", "reference": "r1", "other": "o1"},
                           {"id": "b", "instruction": "q2", "reference": "", "other": "o2"}])
    ref = tmp_path / "ref.jsonl"
    atomic_write_jsonl(ref, [{"instruction": "q2", "input": "", "output": "file-ref"}])
    items = load_items(str(p), "generic", ["reference", "other"], {"file": str(ref)})
    assert items[0]["references"] == {"reference": "r1", "other": "o1"}
    assert items[1]["references"] == {"other": "o2", "file": "file-ref"}
    atomic_write_jsonl(ref, [{"instruction": "unrelated", "output": "x"}])
    with pytest.raises(ConfigError, match="no row matches any test item"):
        load_items(str(p), "generic", ["reference"], {"file": str(ref)})


def test_cache_survives_a_torn_line_and_reloads(tmp_path):
    path = tmp_path / "c.jsonl"
    c = CallCache(path)
    k1, k2 = cache_key("verdict", "1", "ref", "model_first", "judge", "h"), cache_key("verdict", "1", "ref", "reference_first", "judge", "h")
    assert k1 != k2
    c.put(k1, {"judge_reply": "Output (a)"})
    c.close()
    with open(path, "a") as f:
        f.write('{"key": "torn", "judge_re')  # killed mid-write
    c = CallCache(path)
    assert len(c) == 1 and c.get(k1)["judge_reply"] == "Output (a)"
    c.put(k2, {"judge_reply": "tie"})
    c.close()
    assert CallCache(path).get(k2)["judge_reply"] == "tie" and len(CallCache(path)) == 2


def test_report_files(tmp_path):
    recs = [{"id": str(i), "outcomes": {"model_first": "win", "reference_first": "loss" if i % 2 else "win"},
             "verdicts": {"model_first": "a", "reference_first": "a" if i % 2 else "b"}, "model_length": 10 + i,
             "reference_length": 12, "difficulty": str(1 + i % 2)} for i in range(6)]
    report = {"model": "m", "judge": "j", "judge_prompt_hash": "abc", "structured_output": True, "test_path": "t", "format": "generic",
              "n_items": 6, "answers": {"requested": 6, "cached": 0, "generated": 6, "missing": 0, "errors": 0, "empty": 0,
                                        "truncated": 1, "max_tokens": 8},
              "judge_calls": {"requested": 12, "cached": 0, "made": 12, "errors": 0},
              "references": {"ref": summarize(recs, n_boot=200), "empty-ref": summarize([], n_boot=200)},
              "quarantine": {"missing_reference": {"empty-ref": ["0"]}}}
    from medforge.evaluate.refscores import reference_scores

    report["references"]["ref"]["reference_scores"] = reference_scores([("same words", "same words"), ("", "x")], n_boot=100)
    write_freeform_report(report, tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    r = data["references"]["ref"]
    assert r["win_rate"] == pytest.approx(0.75) and data["references"]["empty-ref"]["win_rate"] is None  # NaN -> null
    for key in ("n_items", "win_rate", "ci95", "ties", "unparsed", "first_position_rate", "lc_win_rate", "mean_length", "by_difficulty"):
        assert key in r
    md = (tmp_path / "report.md").read_text()
    assert "| ref | **NOT usable** | 50.0 | 6 | 6 | 75.0 |" in md and "![win_rate.png](win_rate.png)" in md
    # half the items swap outcome with the order (the judge followed slot (a)): the verdict comes before any win rate
    assert md.index("**The judge is NOT usable here**") < md.index("| reference | judge |")
    assert "order consistency 50%, position bias 50% over 6 item(s)" in md
    assert "| ref | 2 | 0.500 [0.000, 1.000] | not computed |" in md and "not AlpaCare's protocol" in md
    assert "<table>" in (tmp_path / "report.html").read_text()
    assert (tmp_path / "win_rate.png").stat().st_size > 2000 and (tmp_path / "win_rate_by_difficulty.png").is_file()


def test_few_shot_curves_from_summaries(tmp_path):
    from medforge.evaluate.mc import few_shot_curves

    for name, ctx, k, accs in (("a", True, 100, [0.5, 0.7]), ("b", False, 100, [0.3]), ("c", True, None, [0.9, 0.9])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(
            {"use_context": ctx, "few_shot": k, "train_rows": 800, "metric": "test_accuracy",
             "seeds": [{"seed": i, "accuracy": a} for i, a in enumerate(accs)]}))
    curves, problems = few_shot_curves([str(tmp_path / n) for n in ("a", "b", "c")] + [str(tmp_path / "missing")])
    assert len(problems) == 1 and "has no summary.json" in problems[0]
    w = curves["with context (test_accuracy)"]
    assert [(p["shots"], p["n_seeds"]) for p in w] == [(100, 2), (800, 2)]  # no few_shot: all training rows
    assert w[0]["mean_accuracy"] == pytest.approx(0.6) and w[0]["std_accuracy"] == pytest.approx(0.141421, abs=1e-6)
    assert curves["without context (test_accuracy)"][0]["std_accuracy"] == 0.0


def test_mc_rows_keep_their_contexts(tmp_path):
    from medforge.evaluate.mc import read_mc_dataset

    p = tmp_path / "m.jsonl"
    atomic_write_jsonl(p, [{"question": "q", "options": {"A": "x", "B": "y"}, "answer": "B", "overall_context": "ctx",
                            "option_contexts": {"A": "no", "B": "yes"}},
                           {"qtext": "h", "answers": [{"aid": 1, "atext": "u"}, {"aid": 2, "atext": "v"}], "ra": 2},
                           {"question": "bad", "options": {"A": "x", "B": "y"}, "answer": "Z"}])
    rows, bad = read_mc_dataset(p)
    assert rows[0]["option_contexts"] == {"A": "no", "B": "yes"} and rows[0]["overall_context"] == "ctx"
    assert rows[1]["answer"] == "B" and "overall_context" not in rows[1]
    assert len(bad) == 1 and bad[0]["line"] == 2 and "neither an option letter" in bad[0]["reason"]
