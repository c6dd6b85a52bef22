"""One question's context request: keywords -> guarded payload -> prompt -> JSON schema.

The context job's keyword stage (:class:`medforge.contexts.pipeline.KeywordStage`) and the
Serve QA endpoint (:mod:`medforge.serve.qa`) both build requests here, so a question served
live is guarded and prompted exactly as in the batch job. Only :meth:`ContextRequest.sent`
(keywords and options) reaches the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medforge.contexts import task
from medforge.contexts.config import ContextGenerationConfig
from medforge.engines.engine import engine_for
from medforge.privacy.keywords import GuardedQuery, KeywordConfig, extract_keywords
from medforge.privacy.vocab import Vocabulary


@dataclass
class ContextRequest:
    """What one question sends to the context LLM, and the local bookkeeping beside it."""

    guarded: GuardedQuery
    letters: list[str]
    messages: list[dict[str, str]]
    json_schema: dict[str, Any] | None

    def sent(self) -> dict[str, Any]:
        """Exactly what crosses the trust boundary: ``keywords`` and ``options``."""
        return self.guarded.payload()


def structured_output_wanted(generation: ContextGenerationConfig, teacher: Any) -> bool:
    """Whether replies are constrained by the per-question JSON schema (``teacher``: any engine config)."""
    return engine_for(teacher).structured(generation.output_format == "json" and generation.structured_output)


def build_context_request(question: str, options: dict[str, str], keywords: KeywordConfig, vocab: Vocabulary,
                          generation: ContextGenerationConfig, structured: bool) -> ContextRequest:
    """Extract and guard keywords locally, then render the prompt from the guarded payload only."""
    gq = extract_keywords(question, options, keywords, vocab)
    letters = list(gq.options)
    sent = gq.payload()  # the ONLY input to the prompt
    messages = task.format_input(sent["keywords"], sent["options"], generation.output_format,
                                 generation.num_demonstrations)
    schema = task.json_schema(letters, generation.max_overall_chars, generation.max_option_chars) if structured else None
    return ContextRequest(gq, letters, messages, schema)
