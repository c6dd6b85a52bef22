"""The reply columns every engine adds to a request row (the typed half of ``Engine.chat``).

Input rows carry ``messages`` (chat messages), ``request_seed`` (int) and optionally
``json_schema`` (JSON text, "" for none: overrides the call's schema for that row); every
other column passes through untouched. Each engine kind adds exactly the columns of :class:`Reply`.
"""

from __future__ import annotations

from typing import Any, TypedDict


class Reply(TypedDict):
    """One request's outcome, as columns of the row that asked it.

    * ``generated_text``: the reply ("" when the request failed);
    * ``num_input_tokens`` / ``num_generated_tokens``: the engine's token counts;
    * ``finish_reason``: ``"length"`` when the reply was cut at the token limit, ``"stop"`` when the
      engine ended it, ``""`` when unknown or the request failed;
    * ``engine_error``: "" on success, else the reason (prompt too long, endpoint gave up after
      retries, ...). A failed row is never dropped: the job quarantines it or leaves it pending.
    """

    generated_text: str
    num_input_tokens: int
    num_generated_tokens: int
    finish_reason: str
    engine_error: str


OUTPUT_COLUMNS: tuple[str, ...] = tuple(Reply.__annotations__)
TEXT_COLUMNS = frozenset({"generated_text", "finish_reason", "engine_error"})


def reply_of(row: dict[str, Any]) -> Reply:
    """The reply columns of an output row, with their declared types."""
    return Reply(generated_text=str(row.get("generated_text") or ""),
                 num_input_tokens=int(row.get("num_input_tokens") or 0),
                 num_generated_tokens=int(row.get("num_generated_tokens") or 0),
                 finish_reason=str(row.get("finish_reason") or ""),
                 engine_error=str(row.get("engine_error") or ""))


def failed_reply(error: str) -> Reply:
    return Reply(generated_text="", num_input_tokens=0, num_generated_tokens=0, finish_reason="", engine_error=error)
