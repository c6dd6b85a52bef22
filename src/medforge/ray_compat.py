"""Every use of a private Ray API in medforge, in one place, for the one Ray it was written for.

Ray's public APIs (``ray.data.llm``, ``ray.serve.llm``, ``ray.train``) do not cover all that
medforge needs, so a few private pieces are used; they can change in any Ray release:

* ``ray.llm._internal.serve``: the OpenAI request/response models (``ChatCompletionRequest``,
  ``ErrorResponse``, ``ModelCard``, ``ModelList``, ``to_model_metadata``) and the ingress's own
  FastAPI app (``init``), which :mod:`medforge.serve.llm` secures before Ray's routes go on it;
* private methods and attributes of ``ray.serve.llm.ingress.OpenAiIngress``
  (``_get_model_id``, ``_get_configured_serve_handle``, ``_configured_serve_handles``,
  ``_default_serve_handles``, ``_model_cards``): the ingress that routes LoRA adapters'
  names to their base model's replicas (:func:`adapter_ingress_class`);
* ``ray._private.state``: the autoscaler's cluster config as the GCS reports it;
* ``ray.autoscaler._private.util``: ``prepare_config`` + ``validate_config``, the checks
  ``ray up`` runs on a cluster launcher file.

Importing this module checks the installed Ray against :data:`RAY_WRITTEN_FOR` (the pin in
pyproject.toml) and raises :class:`RayVersionError` on any other release, naming the fix. Ray
itself is imported only inside the functions: the check reads the installed version from the
package metadata, so importing this module costs no Ray import (light CLIs stay fast).

Moving to a new Ray: check each function here against that release, then change
:data:`RAY_WRITTEN_FOR` and the pin in pyproject.toml together.
"""

from __future__ import annotations

import copy
import importlib.metadata
from typing import Any

#: the Ray release series (major.minor) the private uses below were written and tested against
RAY_WRITTEN_FOR = "2.60"
#: the requirement that gives that Ray (pyproject.toml pins it)
RAY_REQUIREMENT = "ray[data,train,serve]==2.60.0"


class RayVersionError(ImportError):
    """The installed Ray is not the release medforge's private Ray uses were written for."""


def installed_ray_version() -> str | None:
    """The installed Ray's version, from its package metadata (no ``import ray``); None if absent."""
    try:
        return importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        return None


def check_ray_version(installed: str | None) -> None:
    """Raise :class:`RayVersionError` unless ``installed`` is a ``RAY_WRITTEN_FOR.*`` release."""
    if installed is not None and installed.split(".")[:2] == RAY_WRITTEN_FOR.split("."):
        return
    found = "no Ray is installed" if installed is None else f"Ray {installed} is installed"
    raise RayVersionError(
        f"medforge needs Ray {RAY_WRITTEN_FOR}.x, and {found}: medforge uses private Ray APIs "
        f"(medforge.ray_compat) that change between Ray releases; fix: pip install '{RAY_REQUIREMENT}' "
        "(the pin in pyproject.toml), or port medforge/ray_compat.py to that Ray first")


check_ray_version(installed_ray_version())


# ----------------------------------------------------------------------------- Ray Serve LLM
def _openai_api_models():
    from ray.llm._internal.serve.core.configs import openai_api_models

    return openai_api_models


def chat_completion_types() -> tuple[type, type]:
    """Ray Serve LLM's ``(ChatCompletionRequest, ErrorResponse)``: what an ``LLMServer``'s ``chat`` takes and
    answers with when it fails."""
    m = _openai_api_models()
    return m.ChatCompletionRequest, m.ErrorResponse


def model_card_types() -> tuple[type, type]:
    """Ray Serve LLM's ``(ModelCard, ModelList)``: the bodies of ``/v1/models/{id}`` and ``/v1/models``."""
    m = _openai_api_models()
    return m.ModelCard, m.ModelList


def to_model_metadata(model_id: str, llm_config: Any) -> Any:
    """The model card ``OpenAiIngress`` lists for ``llm_config`` (what ``build_openai_app`` gives it)."""
    return _openai_api_models().to_model_metadata(model_id, llm_config)


def init_ingress_app() -> Any:
    """A new FastAPI app for ``make_fastapi_ingress``, with Ray's middleware (its error handler, open CORS)."""
    from ray.llm._internal.serve.core.ingress.ingress import init

    return init()


def adapter_ingress_class() -> type:
    """``OpenAiIngress`` that also knows static LoRA adapters.

    ``model=<adapter>`` goes to the base model's replicas (each has every adapter loaded), and
    ``/v1/models`` lists the adapters. Bind it with ``adapters={adapter name: base model id}``.
    Built on first call (it subclasses a Ray Serve class).
    """
    from ray.serve.llm.ingress import OpenAiIngress

    ModelCard, ModelList = model_card_types()

    class MedforgeIngress(OpenAiIngress):
        """``OpenAiIngress`` + static adapters routed to their base model (see :func:`adapter_ingress_class`)."""

        def __init__(self, llm_deployments, model_cards, *, adapters: dict[str, str], **kwargs):
            super().__init__(llm_deployments, model_cards, **kwargs)
            self._adapters = dict(adapters)  # adapter name -> base model id

        async def _get_model_id(self, model: str | None) -> str:
            if model in self._adapters:
                return model
            return await super()._get_model_id(model)

        def _get_configured_serve_handle(self, model_id: str):
            base = self._adapters.get(model_id)
            if base is None:
                return super()._get_configured_serve_handle(model_id)
            if model_id not in self._configured_serve_handles:
                self._configured_serve_handles[model_id] = self._default_serve_handles[base].options(stream=True)
            return self._configured_serve_handles[model_id]

        def _adapter_card(self, name: str) -> ModelCard:
            base = self._model_cards[self._adapters[name]]
            return ModelCard(id=name, object="model", owned_by=base.owned_by, permission=list(base.permission),
                             metadata={**base.metadata, "base_model_id": base.id, "lora_adapter": True})

        async def model(self, model_id: str) -> ModelCard | None:
            if model_id in self._adapters:
                return self._adapter_card(model_id)
            return await super().model(model_id)

        async def models(self) -> ModelList:
            listed = await super().models()
            return ModelList(data=[*listed.data, *(self._adapter_card(n) for n in self._adapters)])

    return MedforgeIngress


# ----------------------------------------------------------------------------- cluster
def gcs_cluster_config() -> Any:
    """The autoscaler's cluster config as the GCS holds it (a ``ClusterConfig`` proto; autoscaler v2 and
    KubeRay report one), or None. Ray must be initialised. Raises whatever Ray raises where the GCS has none."""
    import ray

    return ray._private.state.state.get_cluster_config()


def validate_cluster_config(config: dict[str, Any]) -> None:
    """What ``ray up`` checks on a cluster launcher file: ``prepare_config`` (fills the defaults), then
    ``validate_config`` (JSON schema). Raises Ray's own error; ``config`` is not modified."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))
