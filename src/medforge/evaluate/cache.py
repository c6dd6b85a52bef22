"""An append-only JSONL cache of engine calls (judge verdicts, model answers).

Keyed by a sha256 of the fields that determine the reply -- for a verdict (item, reference,
order, judge, prompt hash), where the prompt hash covers the rendered messages (so it changes
with either answer and with the template). Each result is appended and flushed as it arrives,
so a killed run keeps every call it paid for, and a repeated run makes none. A torn last line
(killed mid-write) is skipped on load.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from medforge.io import jsonl_line, jsonl_text_lines

logger = logging.getLogger(__name__)


def cache_key(*parts: Any) -> str:
    """Stable sha256 hex of JSON-encoded ``parts``."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def messages_hash(messages: list[dict[str, str]]) -> str:
    return cache_key(messages)[:16]


class CallCache:
    """``key -> record`` backed by one JSONL file (one ``{"key", ...record}`` per line)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._data: dict[str, dict[str, Any]] = {}
        torn = 0
        if self.path.is_file():
            for line in jsonl_text_lines(self.path.read_text(encoding="utf-8")):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    torn += 1
                    continue
                self._data[rec["key"]] = rec
        if torn:
            logger.warning("%s: skipped %d torn line(s) (a run was killed mid-write)", self.path, torn)
        self._file = None

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._data.get(key)

    def put(self, key: str, record: dict[str, Any]) -> None:
        rec = {"key": key, **record}
        self._data[key] = rec
        if self._file is None:
            # a torn last line from a killed run must not glue onto the next record
            needs_newline = self.path.is_file() and self.path.stat().st_size > 0 and not self.path.read_bytes().endswith(b"\n")
            self._file = open(self.path, "a", encoding="utf-8")
            if needs_newline:
                self._file.write("\n")
        self._file.write(jsonl_line(rec) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
