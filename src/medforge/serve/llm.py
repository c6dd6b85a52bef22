"""The OpenAI-compatible LLM endpoint on ``ray.serve.llm``: one base model plus LoRA adapters.

Routes (all behind :class:`medforge.serve.security.GuardMiddleware`): ``/v1/chat/completions``
(streaming and not), ``/v1/completions``, ``/v1/models``, ``/v1/models/{id}``.

It is built from the public pieces of ``ray.serve.llm`` -- ``LLMConfig``,
``build_llm_deployment`` (the vLLM ``LLMServer``), ``OpenAiIngress`` and
``make_fastapi_ingress`` -- composed as ``build_openai_app`` composes them, with three changes:

* the ingress's FastAPI app is ours: ``build_openai_app`` makes one with CORS open to every
  origin, with credentials, and offers no hook for authentication;
* a dead vLLM engine is answered ``503`` + ``Retry-After`` while Serve replaces its replica,
  not ``500`` (:mod:`medforge.serve.faults`);
* LoRA adapters are vLLM's static ``lora_modules`` (loaded by every replica at start), and
  the ingress routes an adapter's name to its base model's replicas. ``ray.serve.llm``'s
  dynamic LoRA (``lora_config.dynamic_lora_loading_path``) only reads from S3/GCS/Azure, so it
  cannot serve the adapters that ``finetune`` writes to a local or shared folder.
"""

from __future__ import annotations

import logging
from typing import Any

from medforge.engines.chat import vllm_engine_settings, vllm_uses_gpu
from medforge.ray_compat import adapter_ingress_class, init_ingress_app, to_model_metadata
from medforge.serve.config import LLMServeConfig, validated_args
from medforge.serve.faults import EngineRestartMiddleware
from medforge.serve.security import secure_app

logger = logging.getLogger(__name__)


def build_llm_config(cfg: LLMServeConfig, use_gpu: bool):
    """Ray's ``LLMConfig`` from ours: the batch jobs' engine settings + LoRA + autoscaling."""
    from ray.serve.llm import LLMConfig

    engine = vllm_engine_settings(cfg.engine, use_gpu)
    engine_kwargs = dict(engine.engine_kwargs)
    # The prompt is patient data: vLLM must never log it (its default, stated so it stays so).
    engine_kwargs["enable_log_requests"] = False
    if cfg.adapters:
        from vllm.entrypoints.openai.models.protocol import LoRAModulePath

        engine_kwargs.update(enable_lora=True, max_lora_rank=cfg.max_lora_rank, max_loras=len(cfg.adapters),
                             lora_modules=[LoRAModulePath(name=n, path=p) for n, p in cfg.adapters.items()])
    return LLMConfig(
        model_loading_config={"model_id": cfg.model_id, "model_source": cfg.engine.model},
        engine_kwargs=engine_kwargs,
        runtime_env=engine.runtime_env,
        placement_group_config=engine.placement_group_config,
        # Serve adds the accelerator_type:<X> label to each bundle (GPU configs only; Ray refuses it on CPU).
        accelerator_type=cfg.engine.accelerator_type if use_gpu else None,
        deployment_config={
            "autoscaling_config": cfg.autoscaling.as_serve(),
            "max_ongoing_requests": cfg.max_ongoing_requests,
            # bounded at the ingress in front of it (ServedAppConfig.front_door_options), which
            # never sends more than max_ongoing_requests x max_replicas at once
            "max_queued_requests": -1,
        },
        log_engine_metrics=False,
    )


def build_llm_app(cfg: LLMServeConfig, use_gpu: bool | None = None):
    """The Serve application (ingress -> LLMServer) for ``cfg``. Ray must be initialised
    when ``use_gpu`` is None (placement ``auto`` asks the cluster whether it has GPUs)."""
    from fastapi import FastAPI
    from ray import serve
    from ray.serve.llm import build_llm_deployment
    from ray.serve.llm.ingress import make_fastapi_ingress

    use_gpu = vllm_uses_gpu(cfg.engine) if use_gpu is None else use_gpu
    llm_config = build_llm_config(cfg, use_gpu)
    deployment = build_llm_deployment(llm_config)
    ingress_cls = adapter_ingress_class()
    app: FastAPI = init_ingress_app()
    _drop_open_cors(app)
    # inside the guard: a refused request never reaches it; outside Ray's error middleware,
    # whose 500 for a dead engine it turns into 503 + Retry-After
    app.add_middleware(EngineRestartMiddleware, retry_after_s=cfg.retry_after_s)
    secure_app(app, cfg.security)
    options = ingress_cls.get_deployment_options([llm_config])
    options["autoscaling_config"] = {**options.get("autoscaling_config", {}),
                                     "min_replicas": 1 if cfg.autoscaling.min_replicas else 0,
                                     "max_replicas": cfg.autoscaling.max_replicas}
    # one ingress replica (its target_ongoing_requests is unbounded) in front of every engine replica
    options.update(cfg.front_door_options(replicas_behind=cfg.autoscaling.max_replicas))
    logger.info("LLM app: model_id=%s adapters=%s gpu=%s", cfg.model_id, sorted(cfg.adapters), use_gpu)
    return serve.deployment(make_fastapi_ingress(ingress_cls, app=app), **options).bind(
        llm_deployments={cfg.model_id: deployment},
        model_cards={cfg.model_id: to_model_metadata(cfg.model_id, llm_config)},
        adapters={name: cfg.model_id for name in cfg.adapters},
    )


def _drop_open_cors(app: Any) -> None:
    """Ray's ingress app opens CORS to every origin with credentials; ours decides (see security)."""
    from fastapi.middleware.cors import CORSMiddleware

    app.user_middleware = [m for m in app.user_middleware if m.cls is not CORSMiddleware]


def app_builder(args: dict[str, Any]):
    """Ray Serve application builder: ``import_path: medforge.serve.llm:app_builder`` in configs/serve/*.yaml."""
    return build_llm_app(validated_args(LLMServeConfig, args, "LLM app args"))
