"""RunFolder: a staging copy that mirrors a URI. The "bucket" here is a folder behind pyarrow's own
LocalFileSystem (the same calls as S3FileSystem); the S3 API itself is tested in
tests/integration/test_cluster_storage.py."""

from __future__ import annotations

import os
import time

import pyarrow.fs
import pytest

from medforge import run_folder as rf
from medforge.io import atomic_write_text


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    root = tmp_path / "bucket"
    root.mkdir()
    monkeypatch.setattr(rf, "storage_filesystem", lambda uri: (pyarrow.fs.LocalFileSystem(), str(root / uri.split("://", 1)[1])))
    return root


def _tree(folder) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in folder.rglob("*") if p.is_file()}


def test_local_dir_is_its_own_staging_and_never_syncs(tmp_path):
    folder = rf.RunFolder(str(tmp_path / "run"), staging_dir=str(tmp_path / "ignored"))
    assert not folder.remote and folder.local == tmp_path / "run"
    assert folder.pull() == 0 and folder.push() == 0
    assert folder.home(tmp_path / "run" / "out") == str(tmp_path / "run" / "out")


def test_push_uploads_changes_only_and_pull_on_another_driver_restores_the_run(tmp_path, bucket):
    a = rf.RunFolder("s3://b/runs/x", staging_dir=str(tmp_path / "driver_a"))
    assert a.pull() == 0  # nothing there yet
    atomic_write_text(a.local / "run.json", "{}")
    atomic_write_text(a.local / "raw" / "round_00000.jsonl", "r0\n")
    (a.local / "raw" / ".round_00001.jsonl.abc.tmp").write_text("half-written")
    assert a.push() == 2  # the temp file of an atomic write in progress is not uploaded
    assert _tree(bucket / "b" / "runs" / "x") == {"run.json": "{}", "raw/round_00000.jsonl": "r0\n"}
    assert a.push() == 0  # nothing changed
    atomic_write_text(a.local / "raw" / "round_00001.jsonl", "r1\n")
    assert a.push() == 1
    assert a.home(a.local / "raw" / "round_00001.jsonl") == "s3://b/runs/x/raw/round_00001.jsonl"

    # a second driver (another node) with a stale staging copy of its own
    stale = tmp_path / "driver_b"
    (stale / "raw").mkdir(parents=True)
    (stale / "raw" / "round_00007.jsonl").write_text("from another run")
    b = rf.RunFolder("s3://b/runs/x", staging_dir=str(stale))
    assert b.pull() == 3
    assert _tree(stale) == {"run.json": "{}", "raw/round_00000.jsonl": "r0\n", "raw/round_00001.jsonl": "r1\n"}
    assert b.push() == 0  # what was pulled is known to be in sync


class _RecordingFS:
    """pyarrow's LocalFileSystem, recording the order in which objects are written."""

    def __init__(self):
        self.fs, self.written = pyarrow.fs.LocalFileSystem(), []

    def __getattr__(self, name):
        return getattr(self.fs, name)

    def open_output_stream(self, path):
        self.written.append(path)
        return self.fs.open_output_stream(path)


def test_push_is_oldest_first_marker_last_and_mirrors_deletions(tmp_path, bucket, monkeypatch):
    rec = _RecordingFS()
    monkeypatch.setattr(rf, "storage_filesystem", lambda uri: (rec, str(bucket / uri.split("://", 1)[1])))
    folder = rf.RunFolder("gs://b/ctx", staging_dir=str(tmp_path / "stage"))
    folder.pull()
    now = time.time_ns()
    for name, age in (("staged/chunk_00001.parquet", 1), ("staged/chunk_00000.parquet", 2), ("staged/manifest.json", 3)):
        atomic_write_text(folder.local / name, name)
        os.utime(folder.local / name, ns=(now - age * 10**9,) * 2)
    # the manifest is the oldest file here, yet as the marker of the step it goes last
    assert folder.push(last=(folder.local / "staged" / "manifest.json",)) == 3
    assert [p.split("/ctx/", 1)[1] for p in rec.written] == [
        "staged/chunk_00000.parquet", "staged/chunk_00001.parquet", "staged/manifest.json"]
    rec.written.clear()
    for chunk in range(2):  # as ChunkWriter does: quarantine, then the shard that marks the chunk done
        atomic_write_text(folder.local / "quarantine" / f"part-{chunk:05d}.jsonl", "bad\n")
        atomic_write_text(folder.local / "out" / f"part-{chunk:05d}.jsonl", "good\n")
        folder.push(last=(folder.local / "out" / f"part-{chunk:05d}.jsonl",))
    assert [p.split("/ctx/", 1)[1] for p in rec.written] == [
        "quarantine/part-00000.jsonl", "out/part-00000.jsonl", "quarantine/part-00001.jsonl", "out/part-00001.jsonl"]
    (folder.local / "out" / "part-00001.jsonl").unlink()
    assert folder.push() == 1
    base = bucket / "b" / "ctx"
    assert not (base / "out" / "part-00001.jsonl").exists() and (base / "quarantine" / "part-00001.jsonl").exists()
    assert folder.push() == 0
