"""The pipeline's two outcomes short of done, raised by the stages and the runner, read by the job."""

from __future__ import annotations


class PipelineRefused(RuntimeError):
    """Refused before any stage ran (exit 2): the message names the problem and the fix."""


class PipelineIncomplete(RuntimeError):
    """A stage finished with work left (exit 3): rerun the same command to go on."""
