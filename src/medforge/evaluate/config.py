"""Configs of the evaluation jobs (``ray_jobs/evaluate.py`` and ``ray_jobs/evaluate_mc.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from medforge.config.base import JobConfig, MedforgeModel, OutputBase
from medforge.engines.config import SamplingConfig, TeacherConfig
from medforge.engines.engine import engine_for


def _greedy(max_tokens: int) -> SamplingConfig:
    return SamplingConfig(temperature=0.0, top_p=1.0, presence_penalty=0.0, max_tokens=max_tokens)


class AnswersSection(MedforgeModel):
    """Where the answers under test come from: the job's ``engine`` writes them, or ``path`` holds them."""

    label: str | None = Field(None, description="Label of the model under test in reports; empty: engine.model "
                                                "(or the answers file's name).")
    path: str | None = Field(
        None, description="JSONL of answers already generated (id, output) to judge instead of generating them "
                          "(then no engine).")
    prompt_format: Literal["chat", "alpaca"] = Field(
        "chat", description="How instructions are put to the model: chat (the tokenizer's/endpoint's chat template) or "
        "alpaca (the Alpaca prompt that medforge finetune trains with by default; vllm only).",
    )
    system_prompt: str | None = Field(None, description="chat only: a system message before each instruction.")
    sampling: SamplingConfig = Field(
        default_factory=lambda: _greedy(512), description="Decoding: greedy by default; max_tokens is the answer length limit.")


class JudgeSection(MedforgeModel):
    name: str | None = Field(None, description="Label of the judge in reports; empty: the engine's model.")
    engine: TeacherConfig = Field(description="The judge: kind=vllm (local folder or hub id) or kind=openai (any endpoint).")
    sampling: SamplingConfig = Field(default_factory=lambda: _greedy(64), description="Judge decoding (greedy by default).")
    structured_output: bool = Field(
        True, description="Constrain verdicts to {\"verdict\": \"Output (a)\"|\"Output (b)\"|\"tie\"} (vLLM guided decoding; "
        "OpenAI json_schema when engine.structured_output). false: free text, parsed robustly.",
    )

    @property
    def label(self) -> str:
        return self.name or self.engine.model


class EvalDataSection(MedforgeModel):
    test_path: str = Field(description="Test set JSONL, e.g. data/MedInstruct-test.jsonl (AlpaCare's, CC BY-NC 4.0).")
    format: Literal["medinstruct", "alpacare", "generic"] = Field(
        "medinstruct", description="medinstruct (id, instruction, difficulty, 4 reference answers), alpacare "
        "(instruction/input/output; output is the reference) or generic (instruction, [input, id, difficulty], reference fields).",
    )
    reference_fields: list[str] | None = Field(
        None, description="Fields holding references: medinstruct default all four; generic default [reference].")
    reference_files: dict[str, str] = Field(
        default_factory=dict, description="Extra AlpaCare-format reference files, name -> path (joined by id, else by text).")
    max_items: int | None = Field(None, ge=1, description="Use only the first N items (smoke runs).")


class EvalOutputSection(OutputBase):
    dir: str = Field(description="Run folder: report.json/.md/.html, PNG plots, verdicts.jsonl, answers.jsonl. "
                                 "A local path, a shared mount, or a URI (s3://, gs://).")
    cache_dir: str | None = Field(
        None, description="Where judge and answer calls are cached (shared across runs is fine); empty: <dir>/cache.")
    staging_dir: str | None = Field(None, description=(
        "With a URI dir: the driver's local copy of the run folder (cache included), pulled at start and pushed "
        "after each pass. null: $MEDFORGE_STAGING_DIR or ~/.cache/medforge/staging/<name>."))
    overwrite: bool = Field(False, description="Delete the run folder (answers, verdicts, reports and the cache in it) "
                                               "before judging afresh; false: reuse the cached calls.")


class StatsSection(MedforgeModel):
    n_boot: int = Field(2000, ge=100, description="Bootstrap resamples for the 95% CI over items.")
    seed: int = Field(0, description="Bootstrap seed.")
    lc_l2: float = Field(1e-3, ge=0, description="L2 penalty on the length coefficient of the length-control GLM.")
    min_consistency: float = Field(
        0.6, ge=0, le=1, description="Judge reliability: the least order consistency (share of items whose two orders "
        "agree) for a usable judge; a coin-flip judge gets 0.5, GPT-4 65% in MT-Bench (docs/evaluation.md).")
    max_position_bias: float = Field(
        0.5, ge=0, le=1, description="Judge reliability: the largest share of items where the judge picked the same "
        "position in both orders for a usable judge.")
    max_unparsed: float = Field(0.2, ge=0, le=1, description="Judge reliability: the largest share of unparsed verdicts.")
    min_pairs: int = Field(10, ge=1, description="Judge reliability: fewer items judged in both orders than this: not usable "
                                                 "(too few to tell).")

    def thresholds(self) -> dict[str, float | int]:
        return {"min_consistency": self.min_consistency, "max_position_bias": self.max_position_bias,
                "max_unparsed": self.max_unparsed, "min_pairs": self.min_pairs}


class ReferenceScoresSection(MedforgeModel):
    rouge_l: bool = Field(True, description="ROUGE-L F1 of each answer against each reference (the novelty filter's exact "
                                            "rouge_score kernel), mean with a bootstrap CI. Not AlpaCare's protocol.")
    embedding_model: str | None = Field(
        None, description="A sentence-embedding folder (e.g. all-MiniLM-L6-v2 from medforge make-small-models): cosine "
                          "similarity of answer and reference, mean-pooled, with a bootstrap CI. null: not computed.")
    max_length: int = Field(256, ge=8, description="Tokens per text for the embedding (longer texts are cut).")


class EvaluateConfig(JobConfig):
    """Free-form evaluation: the model's answers judged pairwise against references, both orders."""

    renamed_keys: ClassVar[dict[str, str]] = {
        "model.engine": "engine", "model.name": "answers.label", "model.answers_path": "answers.path",
        "model.prompt_format": "answers.prompt_format", "model.system_prompt": "answers.system_prompt",
        "model.sampling": "answers.sampling"}

    engine: TeacherConfig | None = Field(
        None, description="The model under test, which writes the answers: kind=vllm (a local folder, e.g. a medforge "
        "export), kind=openai (any OpenAI-compatible endpoint, the medforge serve endpoint included) or kind=scripted. "
        "Empty with answers.path.")
    answers: AnswersSection = Field(default_factory=AnswersSection, description="How the answers are asked for, or "
                                                                                "where given ones are.")
    judge: JudgeSection = Field(description="The pairwise judge.")
    data: EvalDataSection = Field(description="Test set and references.")
    output: EvalOutputSection = Field(description="Where reports go.")
    stats: StatsSection = Field(default_factory=StatsSection, description="Bootstrap, length control, judge-reliability thresholds.")
    reference_scores: ReferenceScoresSection = Field(
        default_factory=ReferenceScoresSection, description="Deterministic reference-based scores beside the judge.")

    @model_validator(mode="after")
    def _one_source(self) -> EvaluateConfig:
        if (self.engine is None) == (self.answers.path is None):
            raise ValueError("set exactly one of engine (generate answers) or answers.path (judge given answers)")
        if self.answers.prompt_format == "alpaca" and self.engine is not None and not engine_for(self.engine).takes_raw_prompt:
            raise ValueError(f"answers.prompt_format=alpaca needs engine.kind=vllm (or scripted), not {self.engine.kind}: "
                             "an OpenAI-compatible endpoint takes chat messages; serve the model with a chat template "
                             "that renders its training prompt, or use answers.prompt_format=chat")
        return self

    @property
    def label(self) -> str:
        """The model under test in reports."""
        if self.answers.label:
            return self.answers.label
        return self.engine.model if self.engine is not None else Path(self.answers.path or "answers").stem


class MCDatasetSection(MedforgeModel):
    name: str | None = Field(None, description="Label in reports; empty: the file stem.")
    path: str = Field(description="JSONL in a format medforge.datasets.mcq reads (MedQA, MedMCQA, HEADQA, generic), "
                                  "optionally with overall_context/option_contexts (medforge attach-contexts output).")
    format: Literal["auto", "medqa", "medmcqa", "headqa", "generic"] = Field("auto", description="Reader; auto guesses from the keys.")
    cop_base: Literal[0, 1] = Field(1, description="MedMCQA only: 1 for the original release, 0 for the Hugging Face export.")

    @property
    def label(self) -> str:
        return self.name or Path(self.path).stem


class MCOutputSection(OutputBase):
    dir: str = Field(description="report.json/.md/.html, accuracy plots, per-question predictions.")
    overwrite: bool = Field(False, description="Delete the folder before writing; false: files of this run replace "
                                               "those of the same name.")


class EvaluateMCConfig(JobConfig):
    """Multiple-choice evaluation of exported SLMs, with and without context, plus few-shot curves.

    Scoring runs in the job's driver process (no Ray cluster is started): an SLM scores a
    MedQA-sized test set in seconds to minutes on one CPU or GPU. ``ray_*`` are accepted, as by
    every job, and unused.
    """

    renamed_keys: ClassVar[dict[str, str]] = {"output_dir": "output.dir"}

    models: dict[str, str] = Field(
        default_factory=dict, description="name -> export folder (medforge finetune-mc's <output.dir>/model).")
    datasets: list[MCDatasetSection] = Field(default_factory=list, description="Datasets to score every model on.")
    use_context: list[Literal["as_trained", "with", "without"]] = Field(
        default_factory=lambda: ["with", "without"],
        description="Context settings scored: with (contexts appended), without, or as_trained (the export's medforge_mc.json).",
    )
    few_shot_runs: list[str] = Field(
        default_factory=list, description="finetune-mc output.dir folders (each with summary.json) for the accuracy-vs-shots curve.")
    batch_size: int = Field(32, ge=1, description="Questions per forward pass.")
    device: str | None = Field(None, description="cpu, cuda; empty: cuda when available.")
    output: MCOutputSection = Field(description="Where reports go.")

    @model_validator(mode="after")
    def _something_to_do(self) -> EvaluateMCConfig:
        if not (self.models and self.datasets) and not self.few_shot_runs:
            raise ValueError("nothing to evaluate: give models + datasets, and/or few_shot_runs")
        if bool(self.models) != bool(self.datasets):
            raise ValueError("models and datasets go together: give both (or neither, with few_shot_runs only)")
        return self
