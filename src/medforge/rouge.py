"""ROUGE's tokenizer, exactly as ``rouge_score`` 0.1.2 tokenizes (default tokenizer, no stemming).

One definition for everything that compares texts by ROUGE-L: the novelty filter
(:mod:`medforge.generate.novelty`), the reply checks (:mod:`medforge.generate.response_checks`),
the reference-based scores of the evaluation (:mod:`medforge.evaluate.refscores`) and the dataset
card's novelty profile (:mod:`medforge.cards.instructions`).
"""

from __future__ import annotations

import re

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Tokenise exactly like rouge_score 0.1.2's default tokenizer without stemming.

    rouge_score lowercases (Unicode-aware, so e.g. ``"İ"`` becomes ``"i"`` plus a combining dot),
    replaces every run outside ``[a-z0-9]`` with a space, splits on ``\\s+`` and keeps tokens
    matching ``^[a-z0-9]+$``. After the substitution only ``[a-z0-9 ]`` remain, so that final
    regex only drops the empty strings produced at the edges, which ``str.split()`` never makes.

    Args:
        text: Any string.

    Returns:
        The token list rouge_score would produce.
    """
    return _NON_ALNUM.sub(" ", text.lower()).split()
