"""Config of the context-generation job (``ray_jobs/contexts.py``)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from medforge.config.base import JobConfig, MedforgeModel, OutputBase
from medforge.generate.response_checks import ResponseCheckConfig
from medforge.datasets.mcq import MAX_QUESTION_CHARS
from medforge.engines.config import SamplingConfig, TeacherConfig
from medforge.engines.engine import engine_for
from medforge.privacy.keywords import KeywordConfig


class ContextInputConfig(MedforgeModel):
    """Where the questions come from."""

    path: str = Field(description="JSONL of MedQA / MedMCQA / HEADQA / generic rows.")
    format: Literal["auto", "medqa", "medmcqa", "headqa", "generic"] = Field(
        "auto", description="Row format; auto detects it per row from the keys.")
    cop_base: Literal[0, 1] = Field(1, description="MedMCQA cop: 1 = original release (1..4), 0 = HF datasets export (0..3).")
    max_question_chars: int = Field(MAX_QUESTION_CHARS, ge=1, le=MAX_QUESTION_CHARS,
                                    description="Longer questions are quarantined.")
    max_rows: int | None = Field(None, ge=1, description="Read only the first N good rows (smoke runs); null: all.")


class ContextGenerationConfig(MedforgeModel):
    """Prompt and decoding."""

    output_format: Literal["json", "text"] = Field(
        "json", description="Ask for a JSON object (needed for structured output) or the line layout of the paper.")
    structured_output: bool = Field(True, description="Constrain decoding with the per-question JSON schema (json only).")
    num_demonstrations: int = Field(5, ge=0, le=5, description="Few-shot demonstrations in the prompt.")
    max_overall_chars: int = Field(2000, ge=16, description="Schema bound on the overall context (structured output).")
    max_option_chars: int = Field(600, ge=8, description="Schema bound on each option context (structured output).")
    sampling: SamplingConfig = Field(
        default_factory=lambda: SamplingConfig(temperature=0.0, top_p=1.0, presence_penalty=0.0, max_tokens=1000),
        description="Decoding; greedy with 1000 new tokens as in the paper.")

    @model_validator(mode="after")
    def _structured_needs_json(self) -> ContextGenerationConfig:
        if self.structured_output and self.output_format != "json":
            raise ValueError("structured_output=true needs output_format=json; set one of them differently")
        return self


class ContextOutputConfig(OutputBase):
    """Where and how results are written."""

    dir: str = Field(description="Run folder: staged input, output parts, quarantine, summary. A local path, a "
                                 "shared mount, or a URI (s3://, gs://): the workers then read the staged input there.")
    staging_dir: str | None = Field(None, description=(
        "With a URI dir: the driver's local copy of the run folder, pulled from the URI at start and pushed "
        "after every chunk. null: $MEDFORGE_STAGING_DIR or ~/.cache/medforge/staging/<name>."))
    chunk_rows: int = Field(10_000, ge=1, description="Rows per chunk: the unit of resume and of one output shard.")
    format: Literal["parquet", "jsonl"] = Field("parquet", description="Output shard format.")
    overwrite: bool = Field(False, description="Delete an existing run folder instead of resuming it.")


class ContextsConfig(JobConfig):
    """Privacy-preserving contextual prompting at scale."""

    renamed_keys: ClassVar[dict[str, str]] = {"teacher": "engine"}

    engine: TeacherConfig = Field(description="The teacher model: vLLM actors (kind: vllm), an OpenAI-compatible API "
                                              "(kind: openai), or replies by rule without a model (kind: scripted: "
                                              "tests, dry runs).")
    input: ContextInputConfig = Field(description="Input questions.")
    keywords: KeywordConfig = Field(default_factory=KeywordConfig, description="Local keyword extraction and guard.")
    keyword_concurrency: tuple[int, int] = Field(
        (1, 2), description="(min, max) keyword-extraction actors; each loads the vocabulary once.")
    generation: ContextGenerationConfig = Field(default_factory=ContextGenerationConfig, description="Prompt and decoding.")
    output: ContextOutputConfig = Field(description="Output folder and sharding.")
    checks: ResponseCheckConfig = Field(
        default_factory=lambda: ResponseCheckConfig(retry=False),
        description="Reply gates on each overall context (empty, refusal, repetition, not_english, truncated; echo "
        "has no instruction to compare with): a row that fails one is quarantined with '<gate>: why'. No retry: "
        "contexts are decoded greedily, so a second ask would repeat the reply (docs/pipeline.md).",
    )
    seed: int = Field(0, description="Base of every request's seed (seed + hash of the row id).")
    object_store_budget_mib: int | None = Field(
        128, ge=32,
        description="Cap on the object-store bytes this job's Ray Data stream holds in flight. Without it, "
                    "fast stages (keywords) run ahead of the teacher and queue up to a share of the cluster's "
                    "whole object store, so memory grows with the input. null: Ray Data's default.")
    ray_object_store_mib: int | None = Field(
        256, ge=80,
        description="Object store of a local cluster (ignored when joining one). Bounded so that the pages "
                    "the workers touch stay bounded on long runs; null: Ray's default, 30% of RAM.")

    @model_validator(mode="after")
    def _checks(self) -> ContextsConfig:
        engine = engine_for(self.engine)
        problems = engine.config_problems({"output.dir": self.output.dir})
        if problems:
            raise ValueError("; ".join(problems))
        if self.object_store_budget_mib and self.ray_object_store_mib and self.object_store_budget_mib > self.ray_object_store_mib:
            raise ValueError(f"object_store_budget_mib={self.object_store_budget_mib} exceeds ray_object_store_mib="
                             f"{self.ray_object_store_mib}; lower the budget or enlarge the store")
        if self.checks.retry:
            raise ValueError("checks.retry=true: the contexts job does not ask twice (greedy decoding repeats the "
                             "reply); set checks.retry=false")
        lo, hi = self.keyword_concurrency
        if lo < 1 or hi < lo:
            raise ValueError(f"keyword_concurrency={self.keyword_concurrency}: need 1 <= min <= max")
        if self.generation.structured_output and not engine.structured(True):
            raise ValueError("generation.structured_output=true but engine.structured_output=false; disable one")
        return self
