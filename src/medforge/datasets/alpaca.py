"""The Alpaca / MedInstruct record format: ``instruction``, ``input``, ``output``.

In the generation prompts and the tasks a teacher writes, a task without an input carries the
marker :data:`NO_INPUT` (self-instruct's and AlpaCare's ``<noinput>``); in an exported dataset
row that input is the empty string (:func:`dataset_input`).
"""

from __future__ import annotations

NO_INPUT = "<noinput>"


def dataset_input(task_input: str) -> str:
    """A task's input as a dataset row holds it: ``""`` for :data:`NO_INPUT`, else unchanged."""
    return "" if task_input == NO_INPUT else task_input
