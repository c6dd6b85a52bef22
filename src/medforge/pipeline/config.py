"""Config of the pipeline job: the stage jobs' own configs, embedded, plus where the run lives.

``generate`` is an :class:`~medforge.generate.config.GenerateConfig`, ``finetune`` an
:class:`~medforge.finetune.config.FinetuneConfig`, ``evaluate`` an
:class:`~medforge.evaluate.config.EvaluateConfig` and ``serve.llm`` the ``args`` of the LLM app of
``configs/serve/*.yaml`` (:class:`~medforge.serve.config.LLMServeConfig`): a stage section is written
exactly as that job's YAML, minus the fields that wire stages together. Those are set by the
pipeline (``MANAGED``); writing one is an error that says so, never silently overridden.

``evaluate.judge.engine: served`` makes the judge the pipeline's served base model (no second
engine start); any engine of the evaluate job works too (an API judge, a vLLM folder).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from medforge.config.base import JobConfig, MedforgeModel, OutputBase, deep_copy, get_dotted, set_dotted
from medforge.generate.config import GenerateConfig
from medforge.evaluate.config import EvaluateConfig
from medforge.serve.config import LLMServeConfig
from medforge.serve.qa import QAServeConfig
from medforge.finetune.config import FinetuneConfig

PLACEHOLDER = "<set by the pipeline>"
# An OpenAI engine pointed here is resolved to the pipeline's served endpoint at run time.
SERVED_URL = "http://medforge-pipeline-served.invalid/v1"
SERVED_BASE = "<the served base model>"

# stage -> dotted fields the pipeline sets (they wire one stage's output into the next)
MANAGED: dict[str, dict[str, Any]] = {
    "generate": {"output.dir": PLACEHOLDER, "output.overwrite": False},
    "finetune": {"data.path": PLACEHOLDER, "checkpoint.storage_path": PLACEHOLDER, "checkpoint.name": "sft",
                 "output.dir": PLACEHOLDER, "output.overwrite": True},
    "evaluate": {"engine": {"kind": "openai", "base_url": SERVED_URL, "model": SERVED_BASE},
                 "answers.path": None, "answers.label": None, "output.dir": PLACEHOLDER, "output.cache_dir": None,
                 "output.overwrite": False},
    "serve.llm": {"engine.model": PLACEHOLDER, "adapters": {}},
}
# Fields that change where or how fast a stage runs, never what it produces: not in fingerprints.
RUNTIME_ONLY = ("ray_address", "ray_num_cpus", "ray_object_store_mib")
STAGES = ("generate", "finetune", "evaluate", "serve")
STAGE_CONFIGS: dict[str, type[JobConfig]] = {
    "generate": GenerateConfig, "finetune": FinetuneConfig, "evaluate": EvaluateConfig}


class PipelineServeSection(MedforgeModel):
    """Serving the tuned model (Ray Serve + ``ray.serve.llm``), also the endpoint evaluation uses."""

    host: str = Field("127.0.0.1", description="HTTP host of Serve's proxy.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port of Serve's proxy.")
    llm: LLMServeConfig = Field(
        description="The LLM app's args, as in configs/serve/*.yaml; engine.model and adapters are set by the pipeline "
                    "(the base model with the tuned LoRA adapter, or the merged export after a full fine-tune).")
    tuned_model_id: str | None = Field(
        None, description="Name clients put in `model` for the tuned model; empty: <llm.model_id>-tuned.")
    keep_serving: bool = Field(
        False, description="Leave the endpoint up when the pipeline ends (on a local Ray the pipeline then waits "
                           "for Ctrl-C). false: deploy, answer one question through it, record, shut down.")
    smoke_question: str = Field(
        "List three symptoms of type 2 diabetes.", description="Asked of the tuned model through the endpoint.")
    medqa: QAServeConfig | None = Field(
        None, description="Also serve POST /v1/medqa (privacy-preserving multiple-choice QA): the medqa app's args of "
                          "configs/serve/*.yaml. context_llm: served makes the tuned model write the contexts.")
    smoke_mc: dict[str, Any] = Field(
        default_factory=lambda: {
            "question": "A 58-year-old man has crushing chest pain radiating to the left arm for 40 minutes, with "
                        "sweating. Which test should be done first?",
            "options": {"A": "Electrocardiogram", "B": "Colonoscopy", "C": "Skin biopsy", "D": "Spirometry"}},
        description="Asked through /v1/medqa when medqa is served.")

    @property
    def tuned_id(self) -> str:
        return self.tuned_model_id or f"{self.llm.model_id}-tuned"

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}/v1"


class PipelineOutputSection(OutputBase):
    dir: str = Field(description="Run folder: one sub-folder per stage and fingerprint, lineage.json, summary.json.")
    overwrite: bool = Field(False, description="Delete the run folder and start afresh (as --force-new); false: "
                                               "resume it, skipping the stages that finished for this config.")


class PipelineConfig(JobConfig):
    """Seed tasks -> tasks and responses -> fine-tune -> evaluate tuned and base -> serve, in one Ray cluster."""

    renamed_keys: ClassVar[dict[str, str]] = {"run_dir": "output.dir"}

    name: str = Field(description="The experiment's name; a run folder holds one experiment (see --force-new).")
    output: PipelineOutputSection = Field(description="Where the run lives.")
    generate: GenerateConfig = Field(description="Stage 1, as configs/generate/*.yaml minus output.dir.")
    finetune: FinetuneConfig = Field(
        description="Stage 2, as configs/finetune/*.yaml minus data.path, checkpoint.storage_path and output.")
    evaluate: EvaluateConfig = Field(
        description="Stage 3, as configs/evaluate/*.yaml minus engine and output; run for the tuned model "
                    "and for its base model with the same judge and references.")
    serve: PipelineServeSection = Field(description="Stage 4: serve the tuned model.")
    ray_num_cpus: int = Field(8, ge=4, description="Logical CPUs of a locally started Ray (Serve LLM needs 8 on a laptop).")

    @classmethod
    def move_renamed_keys(cls, data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        """The pipeline's old keys, and each stage's (``generate.teacher``), moved to their new names."""
        data = super().move_renamed_keys(data, prefix)
        for top, stage in STAGE_CONFIGS.items():
            if isinstance(data.get(top), dict):
                data = {**data, top: stage.move_renamed_keys(data[top], f"{prefix}{top}.")}
        return data

    @model_validator(mode="before")
    @classmethod
    def _fill_managed(cls, data: Any) -> Any:
        """Refuse user values for the wiring fields, then fill them with placeholders (resolved per run)."""
        if not isinstance(data, dict):
            return data
        data = cls.move_renamed_keys(data)  # a stage's old keys, moved before the wiring is checked
        data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
        problems = []
        for section, fields in MANAGED.items():
            top, _, sub = section.partition(".")
            raw = data.get(top)
            if not isinstance(raw, dict):
                continue
            raw = deep_copy(raw)
            data[top] = raw
            node = raw
            if sub:
                if not isinstance(raw.get(sub), dict):
                    continue
                node = raw[sub]
            for dotted, value in fields.items():
                found, given = get_dotted(node, dotted)
                if found and given not in (None, PLACEHOLDER, value):
                    problems.append(f"{section}.{dotted} = {given!r}: set by the pipeline (it wires the stages together); "
                                    "fix: remove it from the pipeline config")
                set_dotted(node, dotted, deep_copy(value))
            if top in ("generate", "finetune", "evaluate"):
                for key in RUNTIME_ONLY:
                    if key in node:
                        problems.append(f"{top}.{key}: the pipeline's own ray_address/ray_num_cpus apply to every stage; "
                                        "fix: set it at the top level")
        sv = data.get("serve")
        if isinstance(sv, dict) and isinstance(sv.get("medqa"), dict) and sv["medqa"].get("context_llm") == "served":
            sv["medqa"] = {**sv["medqa"], "context_llm": {"kind": "openai", "base_url": SERVED_URL, "model": SERVED_BASE}}
        ev = data.get("evaluate")
        if isinstance(ev, dict) and isinstance(ev.get("judge"), dict) and ev["judge"].get("engine") == "served":
            ev["judge"]["engine"] = {"kind": "openai", "base_url": SERVED_URL, "model": SERVED_BASE}
        if problems:
            raise ValueError("; ".join(problems))
        return data

    @property
    def judge_is_served(self) -> bool:
        return getattr(self.evaluate.judge.engine, "base_url", None) == SERVED_URL
