"""Config of the serving apps (the ``args`` of each application in ``configs/serve/<setting>.yaml``).

A ``configs/serve/*.yaml`` file is a plain Ray Serve config file (``serve run`` / ``serve deploy``
read it). Each application's ``args`` is validated here, with ``extra="forbid"``, before
any replica is asked for; the engine settings are the batch jobs' own
(:class:`medforge.engines.config.VLLMTeacherConfig`), so a model is served with the same
engine arguments and CPU/GPU placement it was used with in ``generate``/``contexts``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, field_validator, model_validator

from medforge.config.base import ConfigError, MedforgeModel, format_validation_error
from medforge.engines.config import VLLMTeacherConfig

M = TypeVar("M", bound=MedforgeModel)

_ADAPTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class AuthConfig(MedforgeModel):
    """Bearer API keys. Keys are never logged; comparison is constant-time."""

    api_keys_env: str | None = Field(
        "MEDFORGE_API_KEYS", description="Environment variable holding the accepted keys, comma-separated.")
    api_keys_file: str | None = Field(
        None, description="File with one accepted key per line (blank lines and #comments ignored).")


class SecurityConfig(MedforgeModel):
    """What every route enforces before a request reaches a model."""

    auth: AuthConfig = Field(default_factory=AuthConfig, description="API keys.")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Larger request bodies get 413.")
    cors_origins: list[str] = Field(
        default_factory=list, description="Browser origins allowed by CORS; empty (default): CORS closed.")


class AutoscalingConfig(MedforgeModel):
    """Replica autoscaling of one deployment (Ray Serve ``autoscaling_config``)."""

    min_replicas: int = Field(1, ge=0, description="Replicas kept when idle (0: scale to zero).")
    max_replicas: int = Field(1, ge=1, description="Most replicas under load.")
    target_ongoing_requests: float = Field(16, gt=0, description="Requests per replica the autoscaler aims at.")

    @model_validator(mode="after")
    def _order(self) -> AutoscalingConfig:
        if self.max_replicas < max(1, self.min_replicas):
            raise ValueError(f"max_replicas={self.max_replicas} < min_replicas={self.min_replicas}; raise max_replicas")
        return self

    def as_serve(self) -> dict[str, float | int]:
        return self.model_dump()


class ServedAppConfig(MedforgeModel):
    """What every served app has: replicas, overload limits and security."""

    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig, description="Replicas.")
    max_ongoing_requests: int = Field(64, ge=1, description="Requests one replica handles at once.")
    max_queued_requests: int = Field(
        256, ge=-1, description="Requests waiting per caller before new ones get 503 + Retry-After (-1: unbounded).")
    retry_after_s: float = Field(
        1.0, ge=0, description="Retry-After (seconds, rounded up) on the 503 an overloaded endpoint answers, and on "
                               "the 503 of the LLM endpoint while a dead engine's replica is restarted.")
    security: SecurityConfig = Field(default_factory=SecurityConfig, description="Auth, body limit, CORS.")

    def front_door_options(self, replicas_behind: int = 1) -> dict[str, Any]:
        """Overload limits of the deployment that takes the HTTP request (Ray Serve deployment options).

        ``replicas_behind``: how many replicas of ``max_ongoing_requests`` each one front-door
        replica feeds (1 when the front door does the work itself).

        The bound sits at the front door so that overload is answered by Ray Serve's proxy as
        ``503`` + ``Retry-After`` (``BackpressureConfig``). A bound on a deployment called through a
        handle behind it would surface as an exception inside the app (a 500), not as a 503.
        """
        from ray.serve.config import BackpressureConfig

        return {"max_ongoing_requests": self.max_ongoing_requests * replicas_behind,
                "max_queued_requests": self.max_queued_requests,
                "backpressure_config": BackpressureConfig(status_code=503, retry_after_s=self.retry_after_s)}


def validated_args(model: type[M], args: dict[str, Any], what: str) -> M:
    """An app builder's ``args`` validated, every problem in one :class:`ConfigError`."""
    from pydantic import ValidationError

    try:
        return model.model_validate(args)
    except ValidationError as exc:
        raise ConfigError(what, format_validation_error(exc, model)) from None


class LLMServeConfig(ServedAppConfig):
    """The OpenAI-compatible LLM endpoint (``ray.serve.llm``): one base model plus LoRA adapters."""

    model_id: str = Field(description="Name clients put in `model`, e.g. medforge-llm.")
    engine: VLLMTeacherConfig = Field(
        description="vLLM engine settings, as in the batch jobs' teacher (model folder, max_model_len, dtype, "
                    "placement, cpu_kvcache_gib, engine_kwargs). Its Ray Data fields (batch_size, ...) are unused.")
    adapters: dict[str, str] = Field(
        default_factory=dict,
        description="LoRA adapters served beside the base model: name (what clients put in `model`) -> peft "
                    "adapter folder (e.g. <output.dir>/lora_adapter from finetune with lora.enabled).")
    max_lora_rank: int = Field(16, ge=1, description="Largest adapter rank the engine accepts (vLLM max_lora_rank).")

    @field_validator("model_id")
    @classmethod
    def _no_colon(cls, v: str) -> str:
        if ":" in v or not v.strip():
            raise ValueError(f"model_id {v!r} must be non-empty and hold no ':' (Ray Serve LLM reserves it for LoRA ids)")
        return v

    @field_validator("adapters")
    @classmethod
    def _adapters(cls, v: dict[str, str]) -> dict[str, str]:
        problems = []
        out = {}
        for name, path in v.items():
            if not _ADAPTER_NAME.match(name):
                problems.append(f"adapter name {name!r}: use letters, digits, '.', '_' or '-' (no ':' or '/')")
            p = Path(path).expanduser()
            if "://" not in path and not (p / "adapter_config.json").is_file():
                problems.append(f"adapter {name!r}: {path!r} holds no adapter_config.json; point it at a peft adapter "
                                "folder (finetune with lora.enabled writes <output.dir>/lora_adapter)")
            out[name] = str(p.resolve()) if "://" not in path else path
        if problems:
            raise ValueError("; ".join(problems))
        return out

    @model_validator(mode="after")
    def _adapter_names_differ_from_base(self) -> LLMServeConfig:
        if self.model_id in self.adapters:
            raise ValueError(f"adapter name {self.model_id!r} equals model_id; rename the adapter")
        return self
