"""``POST /v1/medqa``: privacy-preserving medical multiple-choice QA on Ray Serve.

For one ``{question, options}``:

1. keywords are extracted and PHI scrubbed locally (:func:`medforge.contexts.request.build_context_request`,
   the code of ``medforge keywords`` and of the context job);
2. the context LLM is asked for the clinician-style context with only the keywords and the
   options (:class:`medforge.engines.openai_client.OpenAIChatClient`: the context job's client,
   rate limiter and retries; over HTTP for an external API, or over a Serve handle for the LLM
   app of the same Serve instance, :mod:`medforge.serve.context_llm`), and its reply is parsed
   by the job's parser;
3. the options are scored by the exported multiple-choice model (:mod:`medforge.mc.scorer`),
   concurrent requests batched together with ``@serve.batch``;
4. the reply holds the chosen option, a probability per option and exactly what left the site.
   The context is returned only when ``return_context`` is true.

A model exported without context (``use_context: false`` in its ``medforge_mc.json``) is
served in SLM-only mode: nothing leaves the site and no LLM is configured. A request with
``slm_only: true`` gets that mode from a context-trained model too: the scorer sees the question
and options only (how much the context adds is the difference between the two replies).

Nothing here logs request content: bad input gets a 4xx whose reason names the field but
never echoes its value, and an unexpected failure is logged by exception type only.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from medforge.contexts import task
from medforge.contexts.config import ContextGenerationConfig
from medforge.contexts.request import build_context_request, structured_output_wanted
from medforge.engines.config import OpenAITeacherConfig
from medforge.engines.engine import engine_for
from medforge.engines.openai_client import FAILED_PREFIX, error_status
from medforge.mc import scorer
from medforge.privacy.keywords import KeywordConfig
from medforge.privacy.vocab import load_vocabulary
from medforge.serve.config import ServedAppConfig, validated_args
from medforge.serve.context_llm import ServedContextLLM
from medforge.serve.security import secure_app

logger = logging.getLogger(__name__)

MAX_OPTIONS = 10
LETTERS = "ABCDEFGHIJ"


class QAServeConfig(ServedAppConfig):
    """The medical QA endpoint."""

    mc_model: str = Field(description="Exported multiple-choice model folder (finetune-mc's <output_dir>/model).")
    context_llm: Annotated[OpenAITeacherConfig | ServedContextLLM, Field(discriminator="kind")] | None = Field(
        None, description="The context LLM: `kind: openai`, an OpenAI-compatible API (external, or any URL); "
                          "`kind: serve`, the LLM app of this Serve instance through a Serve handle "
                          "(`app_name`, `model`); null: SLM-only mode, for models trained without context.")
    keywords: KeywordConfig = Field(default_factory=KeywordConfig, description="Local keyword extraction and guard.")
    generation: ContextGenerationConfig = Field(
        default_factory=ContextGenerationConfig, description="Context prompt and decoding, as in the contexts job.")
    max_question_chars: int = Field(4000, ge=16, description="Longer questions get 422.")
    max_option_chars: int = Field(500, ge=1, description="Longer options get 422.")
    max_batch_size: int = Field(16, ge=1, description="@serve.batch: most requests scored in one forward pass.")
    batch_wait_timeout_s: float = Field(0.01, ge=0, description="@serve.batch: wait for a batch to fill.")


class QARequest(BaseModel):
    """One question. ``options``: ``{"A": "...", ...}`` or a list (lettered A, B, ...)."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1)
    options: dict[str, str] | list[str]
    return_context: bool = False
    slm_only: bool = Field(False, description=(
        "Answer with the multiple-choice model alone: no keywords, no context LLM call, nothing leaves the site. "
        "A model trained with context is then scored without it (what it knows on its own)."))

    @field_validator("options")
    @classmethod
    def _count(cls, v: dict[str, str] | list[str]) -> dict[str, str]:
        if not 2 <= len(v) <= MAX_OPTIONS:
            raise ValueError(f"need 2 to {MAX_OPTIONS} options, got {len(v)}")
        opts = dict(zip(LETTERS, v, strict=False)) if isinstance(v, list) else dict(v)
        if isinstance(v, dict):
            bad = [k for k in opts if not (len(k) == 1 and k in LETTERS)]
            if bad:
                raise ValueError(f"option labels must be single letters A-J, got {len(bad)} other label(s)")
        if any(not t.strip() for t in opts.values()):
            raise ValueError("an option is empty")
        return opts


def safe_validation_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic/FastAPI errors without the offending input (it may be patient text)."""
    out = []
    for e in errors:
        msg = str(e.get("msg", "invalid"))
        out.append({"loc": [str(p) for p in e.get("loc", ())], "msg": msg, "type": e.get("type", "")})
    return out


def request_seed(options: dict[str, str], keywords: list[str]) -> int:
    digest = hashlib.sha256(("|".join(keywords) + "||" + "|".join(options.values())).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


RETRY_AFTER_S = 5


def context_llm_failure(engine_error: str) -> tuple[int, dict[str, Any]]:
    """The reply to a request whose context LLM call failed, by what the LLM answered.

    A request the LLM refused (a 4xx other than 429: the prompt does not fit its context window,
    an unknown model) is not worth a retry: 502, and the message names the fix. Anything else
    (overload, an engine restarting, a timeout) is: 503, with ``Retry-After``. The LLM's own
    message is logged by status and exception type only (it may quote the request).
    """
    status = error_status(engine_error)
    kind = engine_error.removeprefix(FAILED_PREFIX).split(":")[0]
    logger.warning("context LLM failed: %s (HTTP %s)", kind, status or "none")
    if status is not None and 400 <= status < 500 and status != 429:
        if "context length" in engine_error or "max_model_len" in engine_error:
            fix = ("the context prompt does not fit the context LLM's context window: raise the LLM app's "
                   "engine.max_model_len, or lower this app's generation.sampling.max_tokens")
        elif status == 404:
            fix = "the context LLM does not serve this model: check context_llm.model against its model ids"
        else:
            fix = "check the medqa app's context_llm and generation settings against the LLM's"
        return 502, {"error": {"message": f"the context LLM refused the request (HTTP {status}); {fix}", "code": 502}}
    return 503, {"error": {"message": "the context LLM is unavailable; retry later", "code": 503,
                           "retry_after_s": RETRY_AFTER_S}}


class QAService:
    """The QA logic, Ray-free apart from ``@serve.batch`` (applied by :func:`build_qa_app`)."""

    def __init__(self, cfg: QAServeConfig):
        self.cfg = cfg
        self.mc = scorer.load_mc_model(cfg.mc_model, device="cpu")
        if self.mc.format.use_context and cfg.context_llm is None:
            raise ValueError(f"{cfg.mc_model} was trained with context (use_context: true) but no context_llm "
                             "is configured; set context_llm, or serve a model trained without context")
        self.vocab = load_vocabulary(tuple(cfg.keywords.sources), cfg.keywords.cache_dir)
        self.structured = cfg.context_llm is not None and structured_output_wanted(cfg.generation, cfg.context_llm)
        self._client = None

    def _llm(self):
        if self._client is None:  # created in the replica's event loop, which it then belongs to
            self._client = engine_for(self.cfg.context_llm).client(self.cfg.generation.sampling)
        return self._client

    def check(self, req: QARequest) -> str | None:
        """A reason to refuse the request (422), or None."""
        if len(req.question) > self.cfg.max_question_chars:
            return f"question is longer than {self.cfg.max_question_chars} characters"
        if any(len(t) > self.cfg.max_option_chars for t in req.options.values()):
            return f"an option is longer than {self.cfg.max_option_chars} characters"
        return None

    def score_batch(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Score a batch; rows with ``use_context: False`` (SLM-only requests) are scored without context."""
        out: list[dict[str, Any] | None] = [None] * len(rows)
        for flag in (True, False):
            idx = [i for i, r in enumerate(rows) if r.get("use_context", True) is flag]
            if idx:
                scored = scorer.score_rows(self.mc, [rows[i] for i in idx], batch_size=len(idx),
                                           use_context=None if flag else False)
                for i, res in zip(idx, scored, strict=True):
                    out[i] = res
        return [r for r in out if r is not None]

    async def answer(self, req: QARequest, score) -> tuple[int, dict[str, Any]]:
        """``(status, body)``; ``score`` is the batched scorer (one row in, one result out)."""

        options: dict[str, str] = req.options  # validated into a dict
        timings: dict[str, float] = {}
        row: dict[str, Any] = {"id": "q", "question": req.question, "options": options}
        sent: dict[str, Any] = {"keywords": [], "options": {}}
        context = None
        use_context = self.mc.format.use_context and not req.slm_only
        row["use_context"] = use_context
        if use_context:
            t0 = time.perf_counter()
            creq = build_context_request(req.question, options, self.cfg.keywords, self.vocab,
                                         self.cfg.generation, self.structured)
            sent = creq.sent()
            timings["keywords_ms"] = (time.perf_counter() - t0) * 1000
            t0 = time.perf_counter()
            reply = await self._llm().chat(creq.messages, request_seed(sent["options"], sent["keywords"]),
                                           creq.json_schema)
            timings["context_ms"] = (time.perf_counter() - t0) * 1000
            if reply["engine_error"]:
                return context_llm_failure(reply["engine_error"])
            parsed, reason = task.format_output(reply["generated_text"], creq.letters)
            if parsed is None:
                logger.warning("context reply unusable (%s)", reason.split(" ")[0])
                return 502, {"error": {"message": f"the context LLM's reply was unusable ({reason})", "code": 502}}
            context = parsed
            row["overall_context"] = parsed["overall_context"]
            row["option_contexts"] = parsed["option_contexts"]
        t0 = time.perf_counter()
        result = await score(row)
        timings["slm_ms"] = (time.perf_counter() - t0) * 1000
        body = {
            "answer": result["prediction"],
            "answer_text": options[result["prediction"]],
            "probabilities": result["probs"],
            "sent": sent,  # exactly what left the site (empty in SLM-only mode)
            "mode": "context" if use_context else "slm_only",
            "timings_ms": {k: round(v, 2) for k, v in timings.items()},
        }
        if req.return_context and context is not None:
            body["context"] = context
        return 200, body


class _PrefixIsRoot:
    """``POST /v1/medqa`` (the route prefix itself) is the app's ``/`` route, without the 307 redirect
    to ``/v1/medqa/`` that clients would have to follow (FastAPI refuses an empty route path)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            root = scope.get("root_path", "").rstrip("/")
            if scope.get("path", "").rstrip("/") == root:
                scope = {**scope, "path": root + "/", "raw_path": (root + "/").encode()}
        await self.app(scope, receive, send)


def build_qa_app(cfg: QAServeConfig):
    """The Serve application for ``POST /v1/medqa`` (``route_prefix: /v1/medqa`` in configs/serve/*.yaml)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from ray import serve


    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        return JSONResponse(status_code=422, content={"error": {
            "message": "invalid request", "code": 422, "details": safe_validation_errors(exc.errors())}})

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        logger.error("medqa request failed: %s", type(exc).__name__)  # never the message: it may hold text
        return JSONResponse(status_code=500, content={"error": {"message": "internal error", "code": 500}})

    secure_app(app, cfg.security)
    app.add_middleware(_PrefixIsRoot)

    @serve.deployment(
        autoscaling_config=cfg.autoscaling.as_serve(),
        **cfg.front_door_options(),
        ray_actor_options={"num_cpus": 1},
    )
    @serve.ingress(app)
    class MedQA:
        def __init__(self, cfg_json: dict[str, Any]):
            self.service = QAService(QAServeConfig.model_validate(cfg_json))

        @serve.batch(max_batch_size=cfg.max_batch_size, batch_wait_timeout_s=cfg.batch_wait_timeout_s)
        async def _score(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return await asyncio.to_thread(self.service.score_batch, rows)

        @app.post("/")
        async def medqa(self, req: QARequest) -> JSONResponse:
            reason = self.service.check(req)
            if reason:
                return JSONResponse(status_code=422, content={"error": {"message": reason, "code": 422}})
            status, body = await self.service.answer(req, self._score)
            headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
            return JSONResponse(status_code=status, content=body, headers=headers)

    return MedQA.bind(cfg.model_dump(mode="json"))


def app_builder(args: dict[str, Any]):
    """Ray Serve application builder: ``import_path: medforge.serve.qa:app_builder`` in configs/serve/*.yaml."""
    return build_qa_app(validated_args(QAServeConfig, args, "medqa app args"))
