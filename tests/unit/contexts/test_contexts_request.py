"""The per-question context request shared by the batch job and the QA endpoint."""

from __future__ import annotations

import json

from medforge.contexts import task
from medforge.contexts.config import ContextGenerationConfig
from medforge.contexts.request import build_context_request, structured_output_wanted
from medforge.engines.config import OpenAITeacherConfig
from medforge.privacy.keywords import KeywordConfig
from medforge.privacy.vocab import load_vocabulary

QUESTION = "John Smith, MRN 4417723, a 45-year-old woman from Springfield, has fever and productive cough."
OPTIONS = {"A": "Pneumonia", "B": "Tuberculosis", "C": "Asthma"}


def test_prompt_is_built_from_the_guarded_payload_only():
    gen = ContextGenerationConfig()
    req = build_context_request(QUESTION, OPTIONS, KeywordConfig(), load_vocabulary(), gen, structured=True)
    sent = req.sent()
    assert set(sent) == {"keywords", "options"}
    assert "fever" in sent["keywords"] and "45-year-old woman" in sent["keywords"]
    assert req.messages == task.format_input(sent["keywords"], sent["options"], gen.output_format,
                                             gen.num_demonstrations)
    prompt = json.dumps(req.messages)
    for leaked in ("John", "Smith", "4417723", "Springfield"):
        assert leaked not in prompt
    assert req.letters == ["A", "B", "C"]
    assert req.json_schema == task.json_schema(["A", "B", "C"], gen.max_overall_chars, gen.max_option_chars)


def test_no_schema_unless_structured():
    teacher = OpenAITeacherConfig(base_url="http://127.0.0.1:1/v1", model="m", structured_output=False)
    gen = ContextGenerationConfig()
    assert not structured_output_wanted(gen, teacher)
    assert structured_output_wanted(gen, teacher.model_copy(update={"structured_output": True}))
    req = build_context_request(QUESTION, OPTIONS, KeywordConfig(), load_vocabulary(), gen, structured=False)
    assert req.json_schema is None
