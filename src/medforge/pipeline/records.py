"""Stage fingerprints, stage records and lineage: what makes the pipeline's cache and its provenance.

A stage's fingerprint is a hash of its config (minus the wiring fields the pipeline sets and
the runtime-only fields that never change its output), of what its inputs are made from (seed
file, templates, test set) and of its upstream stages' fingerprints. Its output lives in
``<run_dir>/<stage>/<fingerprint[:12]>/`` and is finished once ``stage.json`` is written there:
a changed config gets a new folder (the old one stays, and is reused if the change is undone),
and a killed stage resumes in its folder with that stage's own resume.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from medforge.io import atomic_write_text

STAGE_RECORD = "stage.json"
SHORT = 12


def _drop(d: dict[str, Any], dotted: str) -> None:
    parts = dotted.split(".")
    node: Any = d
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(parts[-1], None)


def config_for_fingerprint(cfg: BaseModel, exclude: list[str]) -> dict[str, Any]:
    """The config as JSON, without the dotted ``exclude`` fields."""
    data = cfg.model_dump(mode="json")
    for dotted in exclude:
        _drop(data, dotted)
    return data


def fingerprint(stage: str, config: dict[str, Any], upstream: dict[str, str], inputs: dict[str, Any]) -> str:
    """sha256 over the stage name, its config, its inputs' identities and its upstream fingerprints."""
    payload = {"stage": stage, "config": config, "upstream": upstream, "inputs": inputs, "schema": 1}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stage_folder(run_dir: str | Path, stage: str, fp: str) -> Path:
    return Path(run_dir) / stage / fp[:SHORT]


def read_record(folder: Path, fp: str) -> dict[str, Any] | None:
    """The finished stage's record, or ``None`` (not run, killed, or a different fingerprint)."""
    path = folder / STAGE_RECORD
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return rec if rec.get("fingerprint") == fp else None


def write_record(folder: Path, record: dict[str, Any]) -> None:
    atomic_write_text(folder / STAGE_RECORD, json.dumps(record, indent=2, default=str))


def code_version() -> dict[str, Any]:
    """medforge's version and, in a git checkout, the commit and whether the tree had local changes."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        pkg = version("medforge")
    except PackageNotFoundError:
        pkg = "unknown"
    out: dict[str, Any] = {"medforge": pkg, "git_commit": None, "git_dirty": None}
    repo = Path(__file__).resolve().parents[3]
    if (repo / ".git").exists():
        try:
            out["git_commit"] = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                                               text=True, timeout=10, check=True).stdout.strip()
            status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10, check=True).stdout
            out["git_dirty"] = bool(status.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    return out


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

