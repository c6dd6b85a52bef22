"""One async client for OpenAI-compatible chat endpoints: request body, retries, reply parsing.

The Ray Data teacher stage (:mod:`medforge.engines.chat`) and the Serve QA deployment
(:mod:`medforge.serve`) send their requests through :class:`OpenAIChatClient`, so both get the
same body, the same retry policy (429, 5xx, timeouts and connection errors, exponential backoff
with jitter, or the server's ``Retry-After`` when it sends one), the same cluster-wide rate limiter and the same reply columns:

``generated_text`` (str), ``num_input_tokens`` (int), ``num_generated_tokens`` (int),
``finish_reason`` (str: the endpoint's own, e.g. ``stop`` or ``length``; empty when it sends none
or the request failed), ``engine_error`` (str, empty on success). A failed request is returned as an error record,
never raised, so a caller can quarantine it and go on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from typing import Any

from medforge.engines.config import OpenAITeacherConfig, SamplingConfig
from medforge.engines.ratelimit import estimate_tokens, get_limiter
from medforge.engines.reply import Reply, failed_reply
from medforge.io import replace_lone_surrogates
from medforge.secrets import resolve_key

logger = logging.getLogger(__name__)


def parse_chat_reply(data: Any) -> dict[str, Any]:
    """An OpenAI chat-completions JSON body -> our output columns (raises ValueError if it is not one)."""
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise ValueError(f"not a chat completion: {str(data)[:200]}")
    choices = data["choices"]
    message = (choices[0] or {}).get("message") or {} if choices else {}
    finish = (choices[0] or {}).get("finish_reason") if choices else None
    usage = data.get("usage") or {}
    content = message.get("content") or ""
    if not isinstance(content, str):
        raise ValueError(f"reply content is {type(content).__name__}, not text: {str(content)[:200]}")
    # A "\ud800" escape without its pair is not text and no UTF-8 writer (Arrow, files) takes it:
    # replaced with U+FFFD, as a detokenizer does with invalid bytes; the parser then judges the reply.
    content = replace_lone_surrogates(content)
    return {
        "generated_text": content,
        "num_input_tokens": int(usage.get("prompt_tokens") or 0),
        "num_generated_tokens": int(usage.get("completion_tokens") or 0),
        # "length": cut at max_tokens (the reply gates read it; medforge.generate.response_checks)
        "finish_reason": finish if isinstance(finish, str) else "",
        "engine_error": "",
    }


def chat_request_body(teacher: OpenAITeacherConfig, sampling: SamplingConfig, messages: list[dict[str, Any]],
                      seed: int, json_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The chat-completions body for one request (``json_schema`` only where the teacher takes it)."""
    body: dict[str, Any] = dict(
        model=teacher.model,
        messages=list(messages),
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        presence_penalty=sampling.presence_penalty,
        max_tokens=sampling.max_tokens,
        seed=int(seed),
    )
    if json_schema and teacher.structured_output:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "medforge_output", "schema": json_schema},
        }
    return body


def backoff_s(teacher: OpenAITeacherConfig, attempt: int) -> float:
    """Wait before retry ``attempt + 1``: doubling from ``backoff_base_s``, capped, with jitter."""
    return min(teacher.backoff_max_s, teacher.backoff_base_s * 2**attempt) * (0.5 + random.random() / 2)


def retry_after_s(exc: Exception) -> float | None:
    """The wait a 429/503 asks for in ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            import datetime as _dt

            when = parsedate_to_datetime(value)
            return max(0.0, (when - _dt.datetime.now(when.tzinfo or _dt.timezone.utc)).total_seconds())
        except (TypeError, ValueError):
            return None


FAILED_PREFIX = "openai teacher failed after retries: "


def failure_record(reason: str) -> Reply:
    return failed_reply(f"{FAILED_PREFIX}{reason}")


_STATUS = re.compile(r"^(?:\w+: )?(?:Error code: )?([1-5]\d\d)\b")


def error_status(engine_error: str) -> int | None:
    """The HTTP status the endpoint answered a failed request with, read back from the error
    record (``openai``'s ``APIStatusError``: "Error code: 400 - ...", a Serve handle's
    ``ServedLLMError``: "400 ..."); None for a failure without one (timeout, connection)."""
    m = _STATUS.match(engine_error.removeprefix(FAILED_PREFIX))
    return int(m.group(1)) if m else None


class OpenAIChatClient:
    """Async chat requests with a concurrency cap, the shared rate limiter, retries and backoff.

    Create it inside the event loop that will use it: the connection pool and the
    concurrency semaphore belong to that loop.

    Args:
        teacher: endpoint, model, retry and rate-limit settings.
        sampling: decoding parameters sent with every request.
        json_schema: default reply schema (a per-call schema overrides it).
        api_key: the key; ``None`` reads ``teacher.api_key_env`` (``"EMPTY"`` when unset).
        breaker: for batch jobs, ``teacher.breaker`` as a :class:`~medforge.engines.breaker.FailureBreaker`:
            every final outcome is recorded, and once it trips :meth:`chat` raises
            :class:`~medforge.engines.breaker.CircuitOpen` instead of sending (a revoked key then
            costs a handful of requests, not the budget). ``None`` (Serve): never raises.
    """

    def __init__(self, teacher: OpenAITeacherConfig, sampling: SamplingConfig,
                 json_schema: dict[str, Any] | None = None, api_key: str | None = None, breaker=None,
                 transport=None):
        import httpx
        import openai

        self._httpx = httpx
        self._openai = openai
        self.teacher = teacher
        self.sampling = sampling
        self.json_schema = json_schema
        # ``transport``: an object with ``async post(body) -> reply JSON`` and ``retryable(exc)``
        # that carries the request instead of HTTP (the Serve handle of medforge.serve.context_llm);
        # body, retries, backoff, rate limiter and reply parsing stay the same.
        self.transport = transport
        self.client = None if transport is not None else openai.AsyncOpenAI(
            base_url=teacher.base_url,
            api_key=api_key or resolve_key(teacher.api_key_env, teacher.api_key_file) or "EMPTY",
            max_retries=0,  # we retry ourselves, with our own backoff and error records
            timeout=teacher.timeout_s,
        )
        self.sem = asyncio.Semaphore(teacher.max_concurrent_requests)
        self.breaker = breaker
        self.limiter = None
        if teacher.rate_limit is not None:
            self.limiter = get_limiter(teacher.rate_limit)

    async def _wait_for_slot(self, messages: list[dict[str, Any]]) -> None:
        """Reserve a slot in the cluster-wide limiter (every attempt, retries included)."""
        if self.limiter is None:
            return
        rl = self.teacher.rate_limit
        delay = await self.limiter.reserve.remote(estimate_tokens(messages, self.sampling.max_tokens, rl.chars_per_token))
        if delay > 0:
            await asyncio.sleep(delay)

    def retryable(self, exc: Exception) -> bool:
        if self.transport is not None:
            return self.transport.retryable(exc)
        o = self._openai
        if isinstance(exc, (o.RateLimitError, o.APITimeoutError, o.APIConnectionError, o.InternalServerError)):
            return True
        return isinstance(exc, o.APIStatusError) and exc.status_code >= 500

    async def chat(self, messages: list[dict[str, Any]], seed: int,
                   json_schema: dict[str, Any] | str | None = None) -> dict[str, Any]:
        """Send one chat request (retrying); returns the output columns, an error record on failure.

        ``json_schema`` may be a dict or JSON text; empty/None falls back to the default schema.
        """
        if self.breaker is not None:
            self.breaker.check()
        out = await self._chat(messages, seed, json_schema)
        if self.breaker is not None:
            self.breaker.record(out["engine_error"])
        return out

    async def _chat(self, messages: list[dict[str, Any]], seed: int,
                    json_schema: dict[str, Any] | str | None = None) -> dict[str, Any]:
        if isinstance(json_schema, str):
            json_schema = json.loads(json_schema) if json_schema else None
        body = chat_request_body(self.teacher, self.sampling, messages, seed, json_schema or self.json_schema)
        t = self.teacher
        last = ""
        for attempt in range(t.max_retries + 1):
            try:
                async with self.sem:
                    if self.breaker is not None:
                        self.breaker.check()  # tripped while this request waited for a slot
                    await self._wait_for_slot(body["messages"])
                    # The client's generic ``post`` (its documented way to call any endpoint) keeps
                    # its auth, timeouts and status errors but skips ``chat.completions.create``'s
                    # recursive TypedDict transform of every message and the pydantic reply model:
                    # they were ~40% of this actor's CPU at a few hundred requests/s.
                    if self.transport is not None:
                        return parse_chat_reply(await asyncio.wait_for(self.transport.post(body), t.timeout_s))
                    resp = await self.client.post("/chat/completions", body=body, cast_to=self._httpx.Response)
                return parse_chat_reply(resp.json())
            except Exception as exc:  # noqa: BLE001 - every failure becomes an error record
                last = replace_lone_surrogates(f"{type(exc).__name__}: {exc}"[:500])
                if not self.retryable(exc) or attempt == t.max_retries:
                    break
                # The server's Retry-After wins over our backoff (it knows when it will take requests again).
                asked = retry_after_s(exc)
                await asyncio.sleep(min(asked, t.retry_after_max_s) if asked is not None else backoff_s(t, attempt))
        return failure_record(last)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
