"""Resolve a pipeline config into four runnable stage configs, their fingerprints and folders.

Pure: nothing here starts Ray or writes a file, so the whole plan (and every cross-stage
problem) is known before the first stage runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from medforge.config.base import _deep_merge
from medforge.generate.pipeline import InstructionRun
from medforge.evaluate.config import EvaluateConfig
from medforge.pipeline.config import MANAGED, RUNTIME_ONLY, SERVED_URL, STAGES, PipelineConfig
from medforge.pipeline.records import config_for_fingerprint, file_sha256, fingerprint, stage_folder
from medforge.secrets import KeySource
from medforge.finetune.llm import ADAPTER_DIR

DATASET = "dataset/medinstruct.jsonl"
CHECKPOINT_NAME = "sft"


@dataclass
class StagePlan:
    name: str
    fingerprint: str
    folder: Path
    upstream: dict[str, str]
    config: dict[str, Any] = field(default_factory=dict)  # what the fingerprint covers (for lineage)


@dataclass
class Plan:
    cfg: PipelineConfig
    stages: dict[str, StagePlan]
    generate: Any  # GenerateConfig
    finetune: Any  # FinetuneConfig
    lora: bool

    @property
    def adapter_dir(self) -> Path:
        return Path(self.finetune.output.dir) / ADAPTER_DIR

    @property
    def served_ids(self) -> dict[str, str]:
        """Model ids on the endpoint: the tuned one, and the base one when it is served too (LoRA)."""
        ids = {"tuned": self.cfg.serve.tuned_id}
        if self.lora:
            ids["base"] = self.cfg.serve.llm.model_id
        return ids

    def serve_args(self, key: KeySource) -> dict[str, Any]:
        """The LLM app's args: the base model plus the tuned adapter, or the merged full fine-tune.

        Its replicas accept the key of ``key``: its file's path (never the key) goes into their config."""
        args = self.cfg.serve.llm.model_dump(mode="json")
        _accept(args["security"]["auth"], key)
        if self.lora:
            args["engine"]["model"] = self.finetune.model
            args["adapters"] = {self.cfg.serve.tuned_id: str(self.adapter_dir)}
        else:
            args["engine"]["model"] = self.finetune.output.dir
            args["model_id"] = self.cfg.serve.tuned_id
            args["adapters"] = {}
        return args

    def serve_apps(self, key: KeySource) -> list[dict[str, Any]]:
        """The applications of the Serve config: the LLM app, and /v1/medqa when configured."""
        apps = [{"name": "llm", "route_prefix": "/", "import_path": "medforge.serve.llm:app_builder",
                 "args": self.serve_args(key)}]
        medqa = self.cfg.serve.medqa
        if medqa is not None:
            args = medqa.model_dump(mode="json")
            ctx = args.get("context_llm")
            if ctx and ctx.get("base_url") == SERVED_URL:
                args["context_llm"] = {**ctx, "base_url": self.cfg.serve.base_url, "model": self.cfg.serve.tuned_id,
                                       "api_key_env": key.env, "api_key_file": key.file}
            _accept(args["security"]["auth"], key)  # one endpoint, one key: /v1/medqa takes the LLM app's
            apps.append({"name": "medqa", "route_prefix": "/v1/medqa", "import_path": "medforge.serve.qa:app_builder",
                         "args": args})
        return apps

    def eval_config(self, which: str, key: KeySource) -> EvaluateConfig:
        """The evaluate job's config for ``which`` (tuned or base): same judge, references and decoding.

        Requests to the endpoint carry the key of ``key``: each client actor reads it from its source where it runs."""
        cfg = self.cfg
        data = cfg.evaluate.model_dump(mode="json")
        # one Ray Data actor: the requests all go to one endpoint, which batches them; a second actor only
        # costs a start-up on a small machine
        served = {"kind": "openai", "base_url": cfg.serve.base_url, "api_key_env": key.env, "api_key_file": key.file,
                  "concurrency": 1,
                  "max_concurrent_requests": 16, "timeout_s": 600}
        if which == "tuned" or self.lora:
            engine = {**served, "model": self.served_ids[which]}
        else:  # a full fine-tune serves only the tuned model: the base answers on vLLM actors
            engine = {**cfg.serve.llm.engine.model_dump(mode="json"), "kind": "vllm", "model": self.finetune.model}
            # prompted as the tuned model was trained (a base LM may have no chat template at all)
            data["answers"]["prompt_format"] = self.finetune.data.format
            data["answers"]["system_prompt"] = self.finetune.data.system_prompt
        data["engine"] = engine
        data["answers"]["label"] = f"{which}: {engine['model']}"
        if cfg.judge_is_served:
            base_id = self.served_ids.get("base", self.served_ids["tuned"])
            data["judge"]["engine"] = {**served, "model": base_id}
            data["judge"]["name"] = data["judge"].get("name") or f"served {base_id}"
        folder = self.stages["evaluate"].folder
        data["output"] = {"dir": str(folder / which), "cache_dir": str(folder / which / "cache")}
        data["ray_address"], data["ray_num_cpus"] = cfg.ray_address, cfg.ray_num_cpus
        return EvaluateConfig.model_validate(data)


def _accept(auth: dict[str, Any], key: KeySource) -> None:
    """An app's ``security.auth`` set to accept the key of ``key``: its file's path, else its variable."""
    auth["api_keys_file"] = key.file
    if not key.file:
        auth["api_keys_env"] = key.env


def _managed(section: str) -> list[str]:
    return list(MANAGED[section]) + list(RUNTIME_ONLY)


def _absolute(path: Path) -> str:
    return str(path if path.is_absolute() else (Path.cwd() / path))


def _copy(model: BaseModel, updates: dict[str, Any]) -> Any:
    """``model`` revalidated with nested ``updates`` (``{"output": {"dir": ...}}``)."""
    return type(model).model_validate(_deep_merge(model.model_dump(mode="json"), updates))


def make_plan(cfg: PipelineConfig) -> Plan:
    """Fingerprints, folders and resolved configs of the four stages."""
    run_dir = Path(cfg.output.dir)
    ray = {"ray_address": cfg.ray_address, "ray_num_cpus": cfg.ray_num_cpus}
    stages: dict[str, StagePlan] = {}

    # 1. generate: its run fingerprint covers the seed file's content and the prompt templates
    gen_conf = config_for_fingerprint(cfg.generate, _managed("generate"))
    gen_inputs = {"run": InstructionRun(cfg.generate).fingerprint()}
    fp = fingerprint("generate", gen_conf, {}, gen_inputs)
    stages["generate"] = StagePlan("generate", fp, stage_folder(run_dir, "generate", fp), {}, gen_conf)
    generate = _copy(cfg.generate, {"output": {"dir": str(stages["generate"].folder), "overwrite": False}, **ray})

    # 2. finetune on generate's dataset; checkpoints inside its folder, so a rerun resumes them
    ft_conf = config_for_fingerprint(cfg.finetune, _managed("finetune"))
    up = {"generate": stages["generate"].fingerprint}
    fp = fingerprint("finetune", ft_conf, up, {})
    folder = stage_folder(run_dir, "finetune", fp)
    stages["finetune"] = StagePlan("finetune", fp, folder, up, ft_conf)
    finetune = _copy(cfg.finetune, {
        "data": {"path": str(stages["generate"].folder / DATASET)},
        "checkpoint": {"storage_path": _absolute(folder / "checkpoints"), "name": f"{CHECKPOINT_NAME}-{fp[:12]}"},
        "output": {"dir": str(folder / "model"), "overwrite": True}, **ray})

    # 3. evaluate tuned and base: the test set's content is an input
    ev_conf = config_for_fingerprint(cfg.evaluate, _managed("evaluate"))
    test = cfg.evaluate.data.test_path
    ev_inputs = {"test_sha256": file_sha256(test) if os.path.isfile(test) else None,
                 "references": {k: (file_sha256(v) if os.path.isfile(v) else None)
                                for k, v in sorted(cfg.evaluate.data.reference_files.items())},
                 "serve": config_for_fingerprint(cfg.serve, ["keep_serving", "smoke_question"])}
    up = {"finetune": stages["finetune"].fingerprint}
    fp = fingerprint("evaluate", ev_conf, up, ev_inputs)
    stages["evaluate"] = StagePlan("evaluate", fp, stage_folder(run_dir, "evaluate", fp), up, ev_conf)

    # 4. serve the tuned model
    sv_conf = config_for_fingerprint(cfg.serve, ["llm.engine.model", "llm.adapters", "keep_serving"])
    fp = fingerprint("serve", sv_conf, up, {})
    stages["serve"] = StagePlan("serve", fp, stage_folder(run_dir, "serve", fp), dict(up), sv_conf)
    assert tuple(stages) == STAGES
    return Plan(cfg=cfg, stages=stages, generate=generate, finetune=finetune, lora=cfg.finetune.lora.enabled)


def wiring_problems(cfg: PipelineConfig) -> list[str]:
    """Stage configs that do not fit their upstream, each naming both sides and the fix."""
    p: list[str] = []
    ft, ev, sv = cfg.finetune, cfg.evaluate, cfg.serve
    if not cfg.generate.responses.enabled:
        p.append("generate.responses.enabled = false writes tasks without answers, but finetune trains on the answers; "
                 "fix: set generate.responses.enabled=true")
    if ft.lora.enabled and ft.data.format != "chat":
        p.append(f"finetune.data.format = {ft.data.format!r} with finetune.lora.enabled = true: the adapter is served and "
                 "evaluated on the base model, through its own chat template, so it would be prompted differently from "
                 "how it was trained; fix: finetune.data.format=chat (or lora.enabled=false: the merged export then "
                 "carries a chat template that renders the Alpaca prompt)")
    if ft.data.format == "chat" and (ev.answers.system_prompt or None) != (ft.data.system_prompt or None):
        p.append(f"evaluate.answers.system_prompt = {ev.answers.system_prompt!r} but finetune.data.system_prompt = "
                 f"{ft.data.system_prompt!r}: the model would be evaluated with a prompt it was not trained with; "
                 "fix: give both the same value")
    if ft.lora.enabled and sv.llm.max_lora_rank < ft.lora.r:
        p.append(f"serve.llm.max_lora_rank = {sv.llm.max_lora_rank} < finetune.lora.r = {ft.lora.r}: the engine would "
                 f"refuse the tuned adapter; fix: serve.llm.max_lora_rank={ft.lora.r}")
    if sv.medqa is not None and "://" not in sv.medqa.mc_model and not os.path.isdir(sv.medqa.mc_model):
        p.append(f"serve.medqa.mc_model = {sv.medqa.mc_model!r}: no such folder; fix: point it at a multiple-choice "
                 "export (medforge finetune-mc writes <output.dir>/model), or set serve.medqa: null")
    test = ev.data.test_path
    if "://" not in test and not os.path.isfile(test):
        p.append(f"evaluate.data.test_path = {test!r}: file not found, and evaluation runs after hours of generation "
                 "and training; fix: download MedInstruct-test (CC BY-NC 4.0) from github.com/XZhang97666/AlpaCare "
                 "(data/) or the Hugging Face dataset xz97/MedInstruct, or point it at any JSONL of instruction, "
                 "input and reference (data.format=generic)")
    emb = ev.reference_scores.embedding_model
    if emb and "://" not in emb and not os.path.isdir(emb):
        p.append(f"evaluate.reference_scores.embedding_model = {emb!r}: no such folder; fix: medforge make-small-models "
                 "builds all-MiniLM-L6-v2 (.small_models/all-minilm-l6-v2), or set it to null")
    for name, path in ev.data.reference_files.items():
        if "://" not in path and not os.path.isfile(path):
            p.append(f"evaluate.data.reference_files.{name} = {path!r}: file not found; fix: download it or remove it")
    if cfg.judge_is_served and not ft.lora.enabled:
        p.append("evaluate.judge.engine = served needs the base model on the endpoint, which a full fine-tune does not "
                 "serve; fix: finetune.lora.enabled=true, or give the judge its own engine (kind vllm or openai)")
    return p
