"""Where keys come from: an environment variable or a key file, parsed here and nowhere else.

A key file holds one key per line (``#`` comments and blank lines skipped). It is how a key reaches
every node of a cluster without travelling in a job's ``runtime_env`` (which Ray keeps in its job
table and shows in ``ray job list`` and on the dashboard): a file on the shared storage every node
mounts (mode 600), or a Kubernetes Secret mounted as a file.
"""

from __future__ import annotations

import os
from pathlib import Path


def read_key_file(path: str | Path) -> list[str]:
    """The keys in ``path``, in order. ``FileNotFoundError`` names the fix when it is missing."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"key file {str(p)!r} does not exist; create it (one key per line, mode 600), "
                                "e.g. openssl rand -hex 24 > FILE")
    return [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def resolve_key(env: str | None, file: str | Path | None) -> str | None:
    """The first key of ``file`` when it is set, else the value of ``$env``; ``None`` when neither holds one."""
    if file:
        keys = read_key_file(file)
        return keys[0] if keys else None
    return os.environ.get(env) if env else None
