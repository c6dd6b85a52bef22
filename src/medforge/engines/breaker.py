"""Failed teacher requests: what kind of failure, whether a rerun may fix it, and when to stop.

Every job sees each request's final outcome (after the client's own retries) as an
``engine_error`` string ("" on success). Two decisions hang on it:

* **Pending or quarantined.** :func:`classify` tells a failure a rerun can fix (the endpoint was
  down, overloaded, timed out, refused the key, or the engine died: the row stays *pending* and
  is retried when the job runs again) from one it cannot (the request itself is bad: 400, the
  prompt is over the context length: the row is *quarantined* with the reason, and
  ``medforge retry-quarantine`` can send it back after a fix).
* **Stop.** :class:`FailureBreaker` counts consecutive failures. When the same non-retryable
  error (401, 403, 404, 400, context length) repeats ``max_consecutive_fatal`` times in a row,
  or any failures ``max_consecutive_failures`` times in a row, it raises :class:`CircuitOpen`
  naming the error, the count and the fix. Everything finished so far is on disk, so the same
  command resumes once the cause is fixed; the job exits non-zero (3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import Field

from medforge.config.base import MedforgeModel

#: exit status of a job stopped by the breaker or left with pending rows
EXIT_INCOMPLETE = 3
MARKER = "medforge circuit breaker:"


class BreakerConfig(MedforgeModel):
    """When a job stops instead of sending more doomed requests."""

    max_consecutive_failures: int = Field(
        64, ge=1, description="Stop after this many requests in a row failed (after their retries), whatever the error.")
    max_consecutive_fatal: int = Field(
        8, ge=1, description="Stop after the same non-retryable error (401/403/404/400/context length) this many times "
        "in a row: a revoked key stops the job within seconds.")


@dataclass(frozen=True)
class FailureKind:
    key: str
    fatal: bool  # a repeat of the same request will fail the same way (until the cause is fixed)
    pending: bool  # leave the row pending (retried on resume) rather than quarantined
    fix: str


_KINDS = [
    (re.compile(r"\b401\b|AuthenticationError|invalid api key|incorrect api key", re.I),
     FailureKind("401 unauthorized", True, True, "the endpoint refuses the key: set a valid key in the variable "
                 "named by engine.api_key_env (or the file engine.api_key_file), then run the same command again")),
    (re.compile(r"\b403\b|PermissionDenied", re.I),
     FailureKind("403 forbidden", True, True, "the key may not use this model or endpoint: check the account, "
                 "engine.model and engine.base_url, then run the same command again")),
    (re.compile(r"\b404\b|NotFoundError", re.I),
     FailureKind("404 not found", True, True, "check engine.base_url (it should end in /v1) and engine.model")),
    (re.compile(r"context length|maximum model length|max_model_len|longer than the maximum|too long|"
                r"context_length_exceeded", re.I),
     FailureKind("prompt over the context length", True, False, "raise engine.max_model_len (vLLM) or use a model "
                 "with a longer context, or shorten the prompts (fewer seeds per prompt / demonstrations)")),
    (re.compile(r"\b(400|422)\b|BadRequestError|UnprocessableEntity", re.I),
     FailureKind("400 bad request", True, False, "the endpoint rejects the request body: check engine.model, "
                 "sampling.max_tokens and engine.structured_output (set it false for servers without json_schema)")),
    (re.compile(r"\b429\b|RateLimit", re.I),
     FailureKind("429 rate limited", False, True, "lower engine.concurrency / max_concurrent_requests or set "
                 "engine.rate_limit, then run the same command again")),
    (re.compile(r"Connection|connect|unreachable|refused|\b50[234]\b|Timeout|timed out", re.I),
     FailureKind("endpoint unavailable", False, True, "the endpoint is down or overloaded: check it is up at "
                 "engine.base_url, then run the same command again")),
    (re.compile(r"\b5\d\d\b|InternalServerError", re.I),
     FailureKind("5xx server error", False, True, "the endpoint fails: check its logs, then run the same command again")),
    (re.compile(r"EngineDead|engine.*(died|dead)|ActorDied|RayActorError|WorkerCrashed|no reply returned", re.I),
     FailureKind("engine died", False, True, "an engine replica died; the rows it held stay pending and are redone "
                 "when the same command runs again")),
]
_UNKNOWN = FailureKind("request failed", False, True, "see the error above, then run the same command again")


def classify(error: str) -> FailureKind:
    """What kind of failure ``error`` (an ``engine_error`` string) is."""
    for rx, kind in _KINDS:
        if rx.search(error):
            return kind
    return _UNKNOWN


class CircuitOpen(RuntimeError):
    """The breaker stopped the job; the message names the error, the count and the fix."""


@dataclass
class FailureBreaker:
    """Counts consecutive failed requests (in the order their results arrive) and trips."""

    cfg: BreakerConfig = field(default_factory=BreakerConfig)
    consecutive: int = 0
    fatal_key: str = ""
    fatal_run: int = 0
    total_failed: int = 0
    tripped: str = ""  # the message, once open: every later request is refused without being sent

    def check(self) -> None:
        """Raise the trip again if the breaker is open (call before sending a request)."""
        if self.tripped:
            raise CircuitOpen(self.tripped)

    def record(self, error: str | None, what: str = "requests") -> None:
        """Note one request's outcome ("" or None: success). Raises :class:`CircuitOpen` when a bound is passed."""
        self.check()
        if not error:
            self.consecutive = self.fatal_run = 0
            self.fatal_key = ""
            return
        self.consecutive += 1
        self.total_failed += 1
        kind = classify(error)
        if kind.fatal and kind.key == self.fatal_key:
            self.fatal_run += 1
        else:
            self.fatal_key, self.fatal_run = (kind.key, 1) if kind.fatal else ("", 0)
        if self.fatal_run >= self.cfg.max_consecutive_fatal:
            self.trip(f"{self.fatal_run} {what} in a row failed with the same non-retryable error ({kind.key})",
                       error, kind, "engine.breaker.max_consecutive_fatal")
        if self.consecutive >= self.cfg.max_consecutive_failures:
            self.trip(f"{self.consecutive} {what} in a row failed (after their retries)", error, kind,
                       "engine.breaker.max_consecutive_failures")

    def trip(self, what: str, error: str, kind: FailureKind, knob: str) -> None:
        self.tripped = (
            f"{MARKER} stopping: {what}. Last error: {error[:300]}. Fix: {kind.fix}. Everything finished so far "
            f"is saved; the same command resumes (failed rows are pending, not lost). The bound is {knob}.")
        raise CircuitOpen(self.tripped)


def circuit_message(exc: BaseException) -> str | None:
    """The breaker's message if ``exc`` (or an exception it wraps, e.g. from a Ray actor) is a trip."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc)
        if MARKER in text:
            return text[text.index(MARKER):].split("\n")[0]
        exc = exc.__cause__ or exc.__context__ or getattr(exc, "cause", None)
    return None
