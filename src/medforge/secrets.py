"""Where keys come from: an environment variable or a key file, parsed here and nowhere else.

A key file holds one key per line (``#`` comments and blank lines skipped). It is how a key reaches
every node of a cluster without travelling in a job's ``runtime_env`` (which Ray keeps in its job
table and shows in ``ray job list`` and on the dashboard): a file on the shared storage every node
mounts (mode 600), or a Kubernetes Secret mounted as a file.

:class:`KeySource` is the value code passes around instead of a key: the name of the variable and/or
the path of the file. A process that needs the key reads it from its source where it runs; the key
itself is never written to ``os.environ`` nor put in a config that travels.
"""

from __future__ import annotations

import os
import secrets as _random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class NoKeyError(LookupError):
    """A key source that holds no key."""


def read_key_file(path: str | Path) -> list[str]:
    """The keys in ``path``, in order. ``FileNotFoundError`` names the fix when it is missing."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"key file {str(p)!r} does not exist; create it (one key per line, mode 600), "
                                "e.g. openssl rand -hex 24 > FILE")
    return [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def resolve_key(env: str | None, file: str | Path | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The first key of ``file`` when it is set, else the value of ``$env``; ``None`` when neither holds one."""
    if file:
        keys = read_key_file(file)
        return keys[0] if keys else None
    environ = os.environ if environ is None else environ
    return environ.get(env) if env else None


def write_new_key_file(path: str | Path) -> Path:
    """A fresh random key alone in ``path`` (mode 600, its folder 700), replacing what was there."""
    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = p.with_name(p.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(_random.token_hex(24) + "\n")
    os.replace(tmp, p)
    return p


@dataclass(frozen=True)
class KeySource:
    """Where one bearer key is: a key file (its first key) or, without one, the variable ``env``.

    ``file`` is what travels to other processes (the configs of Serve replicas and client actors
    carry its path and each reads the file where it runs); ``env`` names the variable clients are
    told to set, read in this process and never written. ``generated``: the file was made by
    this run (:func:`write_new_key_file`) because no key was given.
    """

    env: str
    file: str | None = None
    generated: bool = False

    def read(self, environ: Mapping[str, str] | None = None) -> str:
        """The key itself (``NoKeyError`` when the source holds none)."""
        key = resolve_key(self.env, self.file, environ)
        if not key:
            raise NoKeyError(f"no key in {self.where}")
        return key

    @property
    def where(self) -> str:
        """Where the key is, for messages (never the key)."""
        return f"the key file {self.file}" if self.file else f"${self.env}"
