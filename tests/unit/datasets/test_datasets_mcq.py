import json

import pytest

from medforge.datasets.mcq import BadRow, iter_mcq_file, normalise_record, parse_line


def test_medqa():
    rec = {"question": "Q?", "options": {"A": "x", "B": "y", "C": "z"}, "answer_idx": "B", "answer": "y"}
    row = normalise_record(rec, "f:0")
    assert row == {"id": "f:0", "question": "Q?", "options": {"A": "x", "B": "y", "C": "z"}, "answer": "B"}


def test_medmcqa_one_based_default_and_zero_based_option():
    rec = {"id": "m1", "question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 4}
    assert normalise_record(rec, "x")["answer"] == "D"
    rec0 = {**rec, "cop": 0}
    with pytest.raises(BadRow, match="cop_base=0"):
        normalise_record(rec0, "x")
    assert normalise_record(rec0, "x", cop_base=0)["answer"] == "A"
    with pytest.raises(BadRow, match="cop_base=1"):
        normalise_record(rec, "x", cop_base=0)
    assert normalise_record({**rec, "cop": "c"}, "x")["answer"] == "C"


def test_headqa_orders_by_aid():
    rec = {"qid": 7, "name": "Cuaderno_2013_1_B", "qtext": "Q?", "ra": 3,
           "answers": [{"aid": 2, "atext": "two"}, {"aid": 1, "atext": "one"}, {"aid": 3, "atext": "three"}]}
    row = normalise_record(rec, "x")
    assert row["options"] == {"A": "one", "B": "two", "C": "three"}
    assert row["answer"] == "C"
    assert row["id"] == "headqa-Cuaderno_2013_1_B-7"


def test_generic_list_options_and_answer_forms():
    base = {"question": "Q?", "options": ["x", "y"]}
    assert normalise_record({**base, "answer": "B"}, "i")["answer"] == "B"
    assert normalise_record({**base, "answer": 0}, "i")["answer"] == "A"
    assert normalise_record({**base, "answer": "y"}, "i")["answer"] == "B"
    assert normalise_record(base, "i")["answer"] is None


@pytest.mark.parametrize("rec, reason", [
    ({"question": "  ", "options": ["x", "y"]}, "question is empty"),
    ({"question": "Q", "options": {}}, "options are missing"),
    ({"question": "Q"}, "options are missing"),
    ({"question": "Q", "options": [str(i) for i in range(11)]}, "more than 10"),
    ({"question": "Q" * 20001, "options": ["x", "y"]}, "over the limit"),
    ({"question": "Q", "options": ["x", "y"], "answer": "E"}, "neither an option letter"),
    ({"question": "Q", "options": ["x", ""]}, "option B is empty"),
    ({"question": "chest pain \ud800?", "options": ["x", "y"]}, r"question holds an unpaired UTF-16 surrogate escape \(\\ud800\) at character 11"),
    ({"question": "Q", "options": ["x", "M\udc80I"]}, "option B holds an unpaired UTF-16 surrogate"),
    ({"id": "a\ud83d", "question": "Q", "options": ["x", "y"]}, "id holds an unpaired"),
])
def test_bad_rows(rec, reason):
    with pytest.raises(BadRow, match=reason):
        normalise_record(rec, "i")


def test_file_stream_quarantines_bad_lines(tmp_path):
    p = tmp_path / "in.jsonl"
    good = json.dumps({"question": "Q?", "options": ["x", "y"], "answer": "A"}).encode()
    p.write_bytes(good + b"\n" + b'{"question": "caf\xe9", "options": ["x","y"]}\n' + b"not json\n\n" + good + b"\n")
    out = list(iter_mcq_file(p))
    assert [i for i, r, _ in out if r] == [0, 4]  # line 3 is blank: skipped
    reasons = {i: why for i, r, why in out if r is None}
    assert "UTF-8" in reasons[1] and "JSON" in reasons[2]
    assert out[0][1]["id"] == "in:0"


def test_surrogate_pairs_are_text_lone_surrogates_are_quarantined():
    # a valid pair (\ud83d\ude00) decodes to one character; the lone one cannot be written as UTF-8
    row = parse_line(b'{"question": "fever \\ud83d\\ude00?", "options": ["x", "y"]}', "i")
    assert row["question"] == "fever \U0001F600?"
    with pytest.raises(BadRow, match="surrogate"):
        parse_line(b'{"question": "fever \\ud83d?", "options": ["x", "y"]}', "i")


def test_parse_line_rejects_non_object():
    with pytest.raises(BadRow, match="JSON object"):
        parse_line(b"[1, 2]", "i")
