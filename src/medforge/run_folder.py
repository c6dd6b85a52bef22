"""A generation job's run folder, at home on a local path, a shared mount, or a storage URI.

The generation jobs (instructions, contexts) resume from the files of their run folder: saved
rounds, finished chunk shards, quarantine files, ``run.json``. When ``output.dir`` is a URI
(``s3://``, ``gs://``...), the job keeps a *staging copy* of the folder on the driver's disk and
the URI stays the home of the run, as Ray Train does with its ``storage_path``:

* at start, :meth:`RunFolder.pull` makes the staging copy equal to the URI (a job resumed on another
  node, or after the head node was replaced, starts from what the URI holds, never from a stale
  local copy);
* after every durable step (a round saved, a chunk written, the outputs), :meth:`RunFolder.push`
  uploads the files that changed since the last push, oldest first and the file that marks the step
  done (a chunk's shard, the staging manifest) last, so it reaches the URI after the files it vouches
  for; and it deletes from the URI what the job deleted (stale shards, ``output.overwrite``).

A crash between two pushes loses at most the step in progress, which the next run redoes, exactly
as a crash locally loses the file being written. Files the Ray workers read (the contexts job's
staged chunks) are read from the URI itself (:meth:`RunFolder.home`), never from the
driver's disk. With a local path or a shared mount, the staging copy *is* the run folder and
pull/push do nothing.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from medforge.config.base import ConfigError
from medforge.io import is_uri, storage_filesystem, storage_write_problem

logger = logging.getLogger(__name__)


def default_staging_dir(uri: str) -> Path:
    """``$MEDFORGE_STAGING_DIR`` (or ``~/.cache/medforge/staging``) / a name derived from the URI."""
    base = os.environ.get("MEDFORGE_STAGING_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "medforge", "staging")
    tail = uri.rstrip("/").rsplit("/", 1)[-1] or "run"
    return Path(base) / f"{tail}-{hashlib.sha256(uri.encode()).hexdigest()[:12]}"


def _signature(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


def _is_temp(rel: str) -> bool:
    # atomic writes go through ".<name>.<random>.tmp" files next to their target
    return Path(rel).name.startswith(".") and rel.endswith(".tmp")


class RunFolder:
    """``local``: where the job reads and writes; ``uri``: the run's home when it is not ``local``."""

    def __init__(self, output_dir: str, staging_dir: str | None = None):
        output_dir = str(output_dir)
        self.uri = output_dir.rstrip("/") if is_uri(output_dir) else None
        if self.uri is None:
            self.local = Path(output_dir)
        else:
            self.local = Path(staging_dir) if staging_dir else default_staging_dir(self.uri)
        self._known: dict[str, tuple[int, int, int]] = {}  # rel path -> signature when last in sync with the URI

    @property
    def remote(self) -> bool:
        return self.uri is not None

    @functools.cached_property
    def _fs(self):
        """``(filesystem, root path in it)``, resolved once (an S3 filesystem may look up the bucket's region)."""
        fs, root = storage_filesystem(self.uri)
        return fs, root.rstrip("/")

    def _local_files(self) -> dict[str, Path]:
        if not self.local.is_dir():
            return {}
        files = {}
        for p in self.local.rglob("*"):
            if p.is_file():
                rel = p.relative_to(self.local).as_posix()
                if not _is_temp(rel):
                    files[rel] = p
        return files

    def pull(self) -> int:
        """Make the staging copy equal to the URI. Returns the number of files downloaded."""
        if not self.remote:
            return 0
        from pyarrow.fs import FileSelector, FileType

        fs, root = self._fs
        remote = {}
        for info in fs.get_file_info(FileSelector(root, recursive=True, allow_not_found=True)):
            rel = info.path[len(root) + 1:]
            if info.type == FileType.File and not _is_temp(rel):
                remote[rel] = info.path
        if self.local.exists():
            shutil.rmtree(self.local)  # a cache of the URI: nothing in it is newer than the URI
        self.local.mkdir(parents=True, exist_ok=True)
        self._known = {}
        for rel, path in sorted(remote.items()):
            dest = self.local / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as out, fs.open_input_stream(path) as src:
                shutil.copyfileobj(src, out, 1 << 20)
            os.replace(tmp, dest)
            self._known[rel] = _signature(dest)
        if remote:
            logger.info("pulled %d file(s) of %s into the staging copy %s", len(remote), self.uri, self.local)
        return len(remote)

    def push(self, last: tuple[str | Path, ...] = ()) -> int:
        """Upload what changed since the last pull/push, oldest first and the files in ``last`` (those
        that mark a step done) after all others; then delete what the job deleted.
        Returns the number of files uploaded or deleted."""
        if not self.remote:
            return 0
        fs, root = self._fs
        files = self._local_files()
        markers = {Path(p).relative_to(self.local).as_posix() for p in last}
        changed = []
        for rel, path in files.items():
            sig = _signature(path)
            if self._known.get(rel) != sig:
                # mtimes tick coarsely (a file system's clock is ~ms): two files of one step may tie
                changed.append((rel in markers, sig[1], rel, path, sig))
        made: set[str] = set()
        for _, _, rel, path, sig in sorted(changed):
            target = f"{root}/{rel}"
            parent = target.rsplit("/", 1)[0]
            if parent not in made:
                fs.create_dir(parent, recursive=True)
                made.add(parent)
            with open(path, "rb") as src, fs.open_output_stream(target) as out:
                shutil.copyfileobj(src, out, 1 << 20)
            self._known[rel] = sig
        gone = [rel for rel in self._known if rel not in files]
        for rel in gone:
            try:
                fs.delete_file(f"{root}/{rel}")
            except FileNotFoundError:
                pass
            del self._known[rel]
        return len(changed) + len(gone)

    def home(self, local_path: str | Path) -> str:
        """Where ``local_path`` (a file of the staging copy, once pushed) lives for a Ray worker on any
        node, and for the user: on the URI when the run lives there."""
        if not self.remote:
            return str(local_path)
        return f"{self.uri}/{Path(local_path).relative_to(self.local).as_posix()}"


def pull_run_folder(folder: RunFolder, field: str) -> None:
    """Before a job reads its run folder: probe a URI with a real write (a missing bucket or permission
    fails in seconds, naming the path and the fix), then pull it into the staging copy."""
    if not folder.remote:
        return

    problem = storage_write_problem(folder.uri, field)
    if problem:
        raise ConfigError("run folder", [problem])
    folder.pull()
