"""The shared multiple-choice encoding and export format (no Ray, no weights)."""

from __future__ import annotations

import pytest

from medforge.mc.encoding import MCFormat, encode_rows, normalize_row
from medforge.mc.scorer import read_mc_format


class PairTok:
    def __call__(self, firsts, seconds, truncation=False, max_length=None):
        ids = [[101, *range(len(a)), 102, *range(len(b)), 102] for a, b in zip(firsts, seconds, strict=True)]
        if truncation:
            ids = [x[:max_length] for x in ids]
        return {"input_ids": ids, "token_type_ids": [[0] * len(x) for x in ids]}


def test_answer_optional_only_when_scoring():
    row = {"question": "Q?", "options": {"A": "x", "C": "y"}}
    with pytest.raises(ValueError, match="missing field 'answer'"):
        normalize_row(row)
    assert normalize_row(row, require_answer=False)[2] is None
    assert normalize_row({**row, "answer": None}, require_answer=False)[2] is None
    with pytest.raises(ValueError, match="not one of the options"):
        normalize_row({**row, "answer": "B"}, require_answer=False)
    enc, counts = encode_rows([row, {**row, "answer": "C"}], PairTok(), False, 32, "truncate", require_answer=False)
    assert [e["label"] for e in enc] == [-1, 1]
    assert enc[0]["option_labels"] == ["A", "C"] and counts == {"ok": 2, "truncated": 0, "dropped": 0}


def test_context_changes_the_second_segment_only_with_use_context():
    row = {"question": "qq", "options": ["a", "b"], "answer": 0, "overall_context": "ctx", "option_contexts": ["yes", "no"]}
    with_ctx, _ = encode_rows([row], PairTok(), True, 64, "truncate")
    without, _ = encode_rows([row], PairTok(), False, 64, "truncate")
    # question (2) + specials (3) + "a ctx yes" (9) vs "a" (1)
    assert [len(x) for x in with_ctx[0]["input_ids"]] == [14, 13]
    assert [len(x) for x in without[0]["input_ids"]] == [6, 6]


def test_format_round_trip_and_bad_files(tmp_path):
    fmt = MCFormat(max_length=48, use_context=True, num_options=4, labels=["A", "B", "C", "D"])
    assert MCFormat.from_json(fmt.to_json()) == fmt
    with pytest.raises(ValueError, match="unknown keys"):
        MCFormat.from_json({**fmt.to_json(), "extra": 1})
    with pytest.raises(ValueError, match="lacks"):
        MCFormat.from_json({"use_context": True})
    with pytest.raises(FileNotFoundError, match="not a medforge multiple-choice export"):
        read_mc_format(tmp_path)
    (tmp_path / "medforge_mc.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_mc_format(tmp_path)


def test_encode_overflow_counts():
    rows = [{"question": "q", "options": {"A": "x" * 50, "B": "y"}, "answer": "A"}, {"question": "q", "options": {"A": "x", "B": "y"}, "answer": "B"}]
    enc, counts = encode_rows(rows, PairTok(), False, 20, "drop")
    assert counts == {"ok": 1, "truncated": 0, "dropped": 1} and enc[0]["label"] == 1
    enc, counts = encode_rows(rows, PairTok(), False, 20, "truncate")
    assert counts["truncated"] == 1 and max(len(x) for x in enc[0]["input_ids"]) == 20
    assert enc[0]["truncated"] and not enc[1]["truncated"]
