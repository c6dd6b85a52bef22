"""Config of the instruction-synthesis job (``ray_jobs/generate.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, model_validator

from medforge.config.base import JobConfig, MedforgeModel, OutputBase
from medforge.generate.filters import TaskFilterConfig
from medforge.generate.response_checks import ResponseCheckConfig
from medforge.engines.config import OpenAITeacherConfig, SamplingConfig, TeacherConfig, VLLMTeacherConfig
from medforge.engines.engine import engine_for


class SeedsConfig(MedforgeModel):
    path: str | None = Field(
        None, description="AlpaCare med_seed.json (JSON list) or JSONL; empty uses medforge's built-in seeds."
    )
    per_prompt: int = Field(3, ge=1, le=20, description="Seed tasks shown in each request (AlpaCare: 3).")


class GenerationConfig(MedforgeModel):
    tasks_per_request: int = Field(10, ge=1, le=50, description="New tasks asked for per request (AlpaCare: 10).")
    requests_per_round: int = Field(
        64, ge=1, description="Requests per round; a round is the unit of checkpointing and progress."
    )
    structured_output: bool = Field(
        True, description="Ask for JSON via guided decoding / response_format; else parse ###-separated text."
    )
    max_instruction_chars: int = Field(500, ge=20, description="Schema bound on an instruction's length.")
    max_input_chars: int = Field(1600, ge=20, description="Schema bound on an input's length.")
    sampling: SamplingConfig = Field(
        default_factory=lambda: SamplingConfig(max_tokens=3072),
        description="Decoding for task generation (AlpaCare: temperature 1, top_p 1, presence 1.5).",
    )


class ResponseConfig(MedforgeModel):
    enabled: bool = Field(True, description="Run the second pass that answers every accepted task.")
    chunk_size: int = Field(256, ge=1, description="Tasks per checkpointed response chunk.")
    structured_multiple_choice: bool = Field(
        True,
        description="For multiple-choice tasks, constrain the reply to {explanation, answer} so it always "
        "ends with 'The answer is (X).'",
    )
    sampling: SamplingConfig = Field(
        default_factory=SamplingConfig, description="Decoding for responses (AlpaCare: T=1, top_p=1, presence 1.5, 300 tokens)."
    )
    checks: ResponseCheckConfig = Field(
        default_factory=ResponseCheckConfig,
        description="Reply gates (empty, refusal, repetition, echo, not_english, truncated): a reply that fails one is "
        "quarantined with the reason, after one retry (docs/pipeline.md).",
    )


class BudgetConfig(MedforgeModel):
    target_tasks: int = Field(52_000, ge=1, description="Stop once this many tasks are accepted (AlpaCare: 52k).")
    max_rounds: int | None = Field(None, ge=1, description=(
        "Stop after this many rounds, whatever was accepted. null: 10x the rounds the target needs if every "
        "generated task were accepted, at least 20 (never unbounded)."))
    max_generated_tokens: int | None = Field(None, ge=1, description="Stop once task generation used this many tokens.")


class OutputConfig(OutputBase):
    dir: str = Field(description="Run folder: checkpoints, dataset, quarantine and summary. Reuse it to resume. "
                                 "A local path, a shared mount, or a URI (s3://, gs://).")
    staging_dir: str | None = Field(None, description=(
        "With a URI dir: the driver's local copy of the run folder, pulled from the URI at start and pushed "
        "after every round and chunk. null: $MEDFORGE_STAGING_DIR or ~/.cache/medforge/staging/<name>."))
    shard_rows: int = Field(10_000, ge=1, description="Rows per Parquet shard of the final dataset.")
    overwrite: bool = Field(False, description="Delete an existing run folder instead of resuming it.")


class GenerateConfig(JobConfig):
    """AlpaCare-style instruction synthesis: seeds -> tasks -> filters -> responses -> dataset."""

    renamed_keys: ClassVar[dict[str, str]] = {"teacher": "engine"}

    engine: TeacherConfig = Field(description="The teacher model and how it runs: kind vllm (Ray Data LLM), openai "
                                              "(endpoint) or scripted (replies by rule, no model: tests and dry runs).")
    seeds: SeedsConfig = Field(default_factory=SeedsConfig, description="Seed tasks.")
    generation: GenerationConfig = Field(default_factory=GenerationConfig, description="Task generation.")
    filters: TaskFilterConfig = Field(default_factory=TaskFilterConfig, description="Length, denylist, novelty.")
    responses: ResponseConfig = Field(default_factory=ResponseConfig, description="Response pass.")
    budget: BudgetConfig = Field(default_factory=BudgetConfig, description="When to stop.")
    output: OutputConfig = Field(description="Where results go.")
    seed: int = Field(0, description="Seed for sampling seed triples and request seeds.")

    @model_validator(mode="after")
    def _check(self) -> "GenerateConfig":
        problems = engine_for(self.engine).config_problems({"output.dir": self.output.dir})
        if problems:
            raise ValueError("; ".join(problems))
        if self.seeds.path is not None and not Path(self.seeds.path).is_file():
            raise ValueError(
                f"seeds.path {self.seeds.path!r} does not exist; point it at AlpaCare's med_seed.json "
                "or a JSONL file, or set it to null for the built-in seeds"
            )
        return self


__all__ = [
    "BudgetConfig", "GenerationConfig", "GenerateConfig", "OpenAITeacherConfig", "OutputConfig",
    "ResponseConfig", "SeedsConfig", "VLLMTeacherConfig",
]
