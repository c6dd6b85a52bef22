import json

import pytest

from medforge.io import RunConfigMismatch, atomic_write_jsonl, open_run_folder, read_jsonl


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
