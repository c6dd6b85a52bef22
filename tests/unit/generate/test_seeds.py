import json

import pytest

from medforge.generate.seeds import NO_INPUT, TASK_TYPES, SeedError, load_seeds, normalize_type


@pytest.mark.parametrize("label,expected", [
    ("Open Q&A", "Open Q&A"), ("Open-ended Q&A", "Open Q&A"), ("Rewrites", "Rewrite"),
    ("Rewrite Task", "Rewrite"), ("USMLE Style Q&A", "USMLE-style Q&A"), ("Multiple Hop Reasoning", "Multi-hop Reasoning"),
    ("Multi-hop reasoning", "Multi-hop Reasoning"), ("Single-Hop Reasoning", "Single-hop Reasoning"),
    ("Multiple-Choice Q&A", "Multiple-choice Q&A"), ("Summarizations", "Summarization"),
    ("Classification Task", "Classification"), ("Text generation", "Text Generation"), ("Chat", "Chat"),
])
def test_normalize_type(label, expected):
    assert normalize_type(label) == expected


def test_unknown_type():
    assert normalize_type("interpretive dance") is None


def test_builtin_seeds_load_and_cover_all_types():
    ss = load_seeds(None)
    assert len(ss.seeds) >= 20 and not ss.quarantined
    assert {s["type"] for s in ss.seeds} == set(TASK_TYPES)
    assert len({s["id"] for s in ss.seeds}) == len(ss.seeds)


def test_alpacare_seed_file_loads_as_is(alpacare_dir):
    ss = load_seeds(alpacare_dir / "med_seed.json")
    assert len(ss.seeds) == 167 and not ss.quarantined
    assert all(s["type"] in TASK_TYPES for s in ss.seeds)
    assert all(1 <= s["difficulty"] <= 5 for s in ss.seeds)
    assert sum(s["input"] == NO_INPUT for s in ss.seeds) > 0
    assert ss.seeds[0]["id"] == "seed-0000"


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(SeedError, match="does not exist"):
        load_seeds(tmp_path / "nope.json")
    (tmp_path / "empty.json").write_text("  \n")
    with pytest.raises(SeedError, match="is empty"):
        load_seeds(tmp_path / "empty.json")


def test_bad_rows_are_quarantined_not_fatal(tmp_path):
    good = {"instruction": "Explain anemia.", "input": "<noinput>", "type": "Open Q&A", "topic": "Hematology",
            "view": "Student", "difficulty": "2"}
    rows = [good, {**good, "topic": None}, {k: v for k, v in good.items() if k != "view"},
            {**good, "difficulty": "9"}, {**good, "type": "Dance"}, "not a dict", {**good, "topic": "Hem\ud800"}]
    p = tmp_path / "s.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken json\n")
    ss = load_seeds(p)
    assert len(ss.seeds) == 1
    reasons = [q["reason"] for q in ss.quarantined]
    assert len(reasons) == 7
    assert any("field topic holds an unpaired UTF-16 surrogate" in r for r in reasons)
    assert any("missing field(s) ['topic']" in r for r in reasons)
    assert any("['view']" in r for r in reasons)
    assert any("difficulty 9" in r for r in reasons)
    assert any("unknown type 'Dance'" in r for r in reasons)
    assert any("not valid JSON" in r for r in reasons)


def test_all_rows_bad_is_an_error(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps([{"instruction": "x"}]))
    with pytest.raises(SeedError, match="no usable seed"):
        load_seeds(p)
