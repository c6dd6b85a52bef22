import json

import pytest

from medforge.io import RunConfigMismatch, atomic_write_jsonl, jsonl_line, jsonl_text_lines, open_run_folder, read_jsonl


def test_run_folder_create_resume_refuse_overwrite(tmp_path):
    root = tmp_path / "run"
    assert open_run_folder(root, {"model": "a", "seed": 0}, overwrite=False) is False
    assert json.loads((root / "run.json").read_text()) == {"model": "a", "seed": 0}
    assert open_run_folder(root, {"model": "a", "seed": 0}, overwrite=False) is True
    (root / "keep.txt").write_text("x")
    with pytest.raises(RunConfigMismatch, match=r"changed: model, seed"):
        open_run_folder(root, {"model": "b", "seed": 1}, overwrite=False)
    assert (root / "keep.txt").exists()  # a refused resume touches nothing
    assert open_run_folder(root, {"model": "b"}, overwrite=True) is False
    assert not (root / "keep.txt").exists()


def test_atomic_jsonl_roundtrip_leaves_no_temp_files(tmp_path):
    rows = [{"a": 1, "t": "é\n"}, {"a": 2}]
    assert atomic_write_jsonl(tmp_path / "x.jsonl", rows) == 2
    assert list(read_jsonl(tmp_path / "x.jsonl")) == rows
    assert [p.name for p in tmp_path.iterdir()] == ["x.jsonl"]


# What a random model wrote into a rejected task (CI, the tiny LLaMA's generation test, since folded into test_generate_small): U+2028 and friends are
# line breaks to str.splitlines(), JavaScript and many JSONL readers, yet json.dumps keeps them raw.
@pytest.mark.parametrize("brk", ["\u2028", "\u2029", "\u0085"])
def test_jsonl_escapes_line_breaks_json_keeps_raw(tmp_path, brk):
    rows = [{"input": f"<ination ago{brk}manAll minute", "é": "ü"}, {"a": 2}]
    atomic_write_jsonl(tmp_path / "x.jsonl", rows)
    text = (tmp_path / "x.jsonl").read_text(encoding="utf-8")
    assert brk not in text and "é" in text  # escaped, other text stays readable
    assert [json.loads(x) for x in text.splitlines()] == rows  # even a splitlines() reader gets 2 rows
    assert list(read_jsonl(tmp_path / "x.jsonl")) == rows
    assert jsonl_line(rows[0]) == text.split("\n")[0]


def test_jsonl_text_lines_splits_at_newline_only():
    text = '{"t": "a\u2028b"}\r\n{"t": "c\u0085"}\n'
    assert [json.loads(x) for x in jsonl_text_lines(text) if x] == [{"t": "a\u2028b"}, {"t": "c\u0085"}]


def test_jsonl_writes_lone_surrogates_as_escapes(tmp_path):
    rows = [{"t": "a\ud800b", "pair": "\U0001F600"}]
    atomic_write_jsonl(tmp_path / "x.jsonl", rows)  # a raw lone surrogate cannot be encoded as UTF-8
    assert "\\ud800" in (tmp_path / "x.jsonl").read_text(encoding="utf-8")
    assert list(read_jsonl(tmp_path / "x.jsonl")) == rows
