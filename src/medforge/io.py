"""Small, crash-safe file helpers shared by every job.

Every file a job relies on for resuming is written to a temporary name in the same folder
and renamed into place, so a kill at any moment leaves either the old file or the new one,
never half of one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, _umask_mode())  # mkstemp creates 0600; outputs should be readable like any file
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# json.dumps(ensure_ascii=False) leaves these raw inside strings. U+0085/U+2028/U+2029: str.splitlines(),
# JavaScript and many JSONL readers break lines at them, so a model that writes one would split its
# row in two. Lone UTF-16 surrogates (from a "\ud800" escape in some JSON input): UTF-8 cannot encode
# them, so the write would fail. As \u escapes both are valid JSON and parse back to the same string.
_ESCAPE_RAW = re.compile("[\u0085\u2028\u2029\ud800-\udfff]")


def jsonl_line(obj: Any) -> str:
    """One JSON line (no trailing newline): UTF-8 text kept readable, line breaks and lone surrogates escaped."""
    text = json.dumps(obj, ensure_ascii=False, default=_json_default)
    if _ESCAPE_RAW.search(text):
        text = _ESCAPE_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


# A "\ud800" JSON escape without its pair decodes to a lone surrogate: not text, and no UTF-8 writer
# (Arrow, files, HTTP bodies) can encode it.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate_problem(text: str) -> str | None:
    """Why ``text`` cannot be written as UTF-8 (an unpaired surrogate, with where), or ``None``."""
    m = _LONE_SURROGATE.search(text)
    if m is None:
        return None
    return (f"holds an unpaired UTF-16 surrogate escape (\\u{ord(m.group()):04x}) at character {m.start()}: "
            "not text, cannot be written as UTF-8; fix or remove that escape")


def replace_lone_surrogates(text: str) -> str:
    """``text`` with each unpaired surrogate replaced by U+FFFD (as a decoder does with invalid bytes)."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def jsonl_text_lines(text: str) -> list[str]:
    """Split JSONL text into its lines at ``\\n`` only (``\\r\\n`` accepted).

    Unlike ``str.splitlines()`` this never splits inside a JSON string that holds a raw
    U+2028, U+2029 or U+0085, which other writers (and valid JSON) allow.
    """
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows as JSON lines atomically; returns the row count."""
    lines = [jsonl_line(r) for r in rows]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


class RunConfigMismatch(RuntimeError):
    """The run folder was made by a config that generates different data."""


def check_run_folder(root: str | Path, fingerprint: dict[str, Any], overwrite: bool) -> bool:
    """Whether ``root`` holds a run of this config to resume; writes nothing.

    Raises:
        RunConfigMismatch: when it holds a run of another config (and ``overwrite`` is off).
    """
    run_json = Path(root) / "run.json"
    if overwrite or not run_json.is_file():
        return False
    old = json.loads(run_json.read_text())
    changed = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
    if changed:
        raise RunConfigMismatch(
            f"{root} was generated with a different config (changed: {', '.join(changed)}); "
            "resume with the original config, pick a new output.dir, or set output.overwrite=true"
        )
    return True


def clear_output_folder(root: str | Path) -> None:
    """``output.overwrite=true`` of a job that keeps no fingerprint: delete its local folder, if any."""
    root = Path(root)
    if root.exists():
        logger.warning("output.overwrite=true: deleting %s", root)
        shutil.rmtree(root)


def open_run_folder(root: str | Path, fingerprint: dict[str, Any], overwrite: bool) -> bool:
    """Create a job's run folder, or check that an existing one was made by the same config.

    ``fingerprint`` holds everything that shapes the data; it is stored as ``run.json``.

    Returns:
        ``True`` when an existing run is being resumed.

    Raises:
        RunConfigMismatch: naming the fields whose values changed.
    """
    root = Path(root)
    run_json = root / "run.json"
    if overwrite and root.exists():
        logger.warning("output.overwrite=true: deleting %s", root)
        shutil.rmtree(root)
    if check_run_folder(root, fingerprint, overwrite):
        logger.info("resuming run in %s", root)
        return True
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_json, json.dumps(fingerprint, indent=2))
    return False


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    # file iteration splits at \n (and \r), never at U+2028 and friends
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def atomic_write_parquet_shards(folder: str | Path, rows: list[dict[str, Any]], shard_rows: int, prefix: str = "part") -> list[Path]:
    """Write ``rows`` as ``prefix-00000.parquet``... shards; stale shards from an earlier write are removed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, start in enumerate(range(0, max(len(rows), 1), shard_rows)):
        chunk = rows[start : start + shard_rows]
        if not chunk and i > 0:
            break
        table = pa.Table.from_pylist(chunk) if chunk else pa.table({})
        path = folder / f"{prefix}-{i:05d}.parquet"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        os.chmod(tmp, _umask_mode())
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(path)
    keep = {p.name for p in written}
    for stale in folder.glob(f"{prefix}-*.parquet"):
        if stale.name not in keep:
            stale.unlink()
    return written


def _json_default(obj: Any) -> Any:
    # numpy scalars / arrays coming back from Ray Data
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# ----------------------------------------------------------------------------- storage (local, shared mount, URI)
# Roots of mounts every node of a cluster sees (EFS / Filestore / NFS mounted by cluster.yaml, or
# Anyscale's /mnt/cluster_storage). ``MEDFORGE_SHARED_MOUNTS`` (colon-separated) replaces them.
DEFAULT_SHARED_MOUNTS = ("/mnt/shared", "/mnt/cluster_storage")


def is_uri(path: str) -> bool:
    """A storage URI (``s3://``, ``gs://``, ``abfs://``...); ``file://`` counts as local."""
    return "://" in str(path) and not str(path).startswith("file://")


def shared_mounts() -> tuple[str, ...]:
    env = os.environ.get("MEDFORGE_SHARED_MOUNTS")
    return tuple(p for p in env.split(":") if p) if env is not None else DEFAULT_SHARED_MOUNTS


def is_cluster_storage(path: str) -> bool:
    """Whether every node of a cluster reaches ``path``: a URI, or a path under a shared mount."""
    if is_uri(path):
        return True
    resolved = os.path.abspath(os.path.expanduser(str(path)))
    return any(resolved == m or resolved.startswith(m.rstrip("/") + "/") for m in shared_mounts())


def storage_filesystem(path: str):
    """``(pyarrow filesystem, path inside it)`` for a URI or a local path -- what Ray Train and Ray Data use.

    Endpoints and credentials come from the environment as for any AWS/GCP client
    (``AWS_ENDPOINT_URL``, an instance profile, ``GOOGLE_APPLICATION_CREDENTIALS``...).
    """
    import pyarrow.fs

    if is_uri(path):
        return pyarrow.fs.FileSystem.from_uri(str(path))
    return pyarrow.fs.LocalFileSystem(), os.path.abspath(os.path.expanduser(str(path)))


def storage_write_problem(path: str, field: str) -> str | None:
    """Write, read back and delete a probe object under ``path``; the reason it failed, or ``None``.

    Run before a job starts, so a missing bucket or a missing permission fails in seconds
    instead of after the first hour of generation or the first checkpoint.
    """
    import uuid

    try:
        fs, root = storage_filesystem(path)
        fs.create_dir(root, recursive=True)
        probe = f"{root.rstrip('/')}/.medforge-write-probe-{uuid.uuid4().hex}"
        with fs.open_output_stream(probe) as f:
            f.write(b"ok")
        with fs.open_input_stream(probe) as f:
            if f.read() != b"ok":
                return f"{field} = {path!r}: a probe object read back different bytes; fix: check the storage"
        fs.delete_file(probe)
    except Exception as exc:  # noqa: BLE001 - every failure is reported with the path and the fix
        return (f"{field} = {path!r}: cannot be written ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); "
                "fix: create the bucket/folder, grant this cluster write access (instance profile / service "
                "account), or pick another path")
    return None


def local_path_problem(path: str, field: str, nodes: int) -> str | None:
    """A local path on a cluster of ``nodes`` nodes: other nodes would write (or read) their own disks."""
    if nodes <= 1 or is_cluster_storage(path):
        return None
    return (f"{field} = {path!r}: a local path, but the cluster has {nodes} nodes (or can grow to more), and each "
            f"would see its own disk; fix: use s3://... / gs://... or a shared mount ({', '.join(shared_mounts())}; "
            "MEDFORGE_SHARED_MOUNTS adds others)")
