"""What a job's ``run_*`` function returns: a typed result, printed by ``medforge.jobs.run_job``.

Each job's result subclasses :class:`JobResult` next to its run function. Callers (the
pipeline's stages, the demo, benchmarks) read attributes, never string keys; a renamed or
missing field fails where it is read, and a result holds nothing that is not declared.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ResultModel(BaseModel):
    """Base of results and their parts: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class EngineRef(ResultModel):
    """Which engine did the work."""

    kind: str
    model: str


class JobResult(ResultModel):
    """Fields every job reports."""

    output_dir: str = Field(description="The job's output.dir (where its files are).")
    incomplete: str | None = Field(
        None, description="Set when the job stopped with work left (rows pending after failed requests): what is "
                          "left and how to go on. The job then exits 3.")

    def summary(self) -> dict[str, Any]:
        """The result as plain JSON data; ``incomplete`` only when set (a finished run has no such key)."""
        return self.model_dump(mode="json", exclude=None if self.incomplete else {"incomplete"})

    def summary_json(self) -> str:
        """:meth:`summary` as indented JSON: what the job prints and writes to ``summary.json``."""
        return self.model_dump_json(indent=2, exclude=None if self.incomplete else {"incomplete"})
