import json

from medforge.generate import instruction_task as it
from medforge.generate.seeds import NO_INPUT, TASK_TYPES, load_seeds


def _task(**kw):
    base = {"type": "Open Q&A", "topic": "Cardiology", "view": "Student", "difficulty": 2,
            "instruction": "Explain what causes orthopnea in heart failure.", "input": "<noinput>"}
    return {**base, **kw}


def test_prompt_renders_requirements_and_examples():
    seeds = load_seeds(None).seeds[:3]
    msgs = it.format_input(seeds, num_tasks=10, structured=False)
    assert len(msgs) == 1 and msgs[0]["role"] == "user"
    text = msgs[0]["content"]
    for s in seeds:
        assert s["instruction"] in text
    for needle in ["Write 10 new tasks", "Medical only", "patient", "<noinput>", "50 to 200 words",
                   "tasks 4 to 13", "Difficulty"]:
        assert needle in text, needle
    for t in TASK_TYPES:
        assert t in text
    structured = it.format_input(seeds, num_tasks=10, structured=True)[0]["content"]
    assert '{"tasks": [...]}' in structured and "tasks 4 to 13" not in structured


def test_schema_shape():
    schema = it.task_json_schema(4, 100, 200)
    arr = schema["properties"]["tasks"]
    assert arr["minItems"] == arr["maxItems"] == 4
    assert set(arr["items"]["required"]) == set(it.FIELDS)
    assert arr["items"]["properties"]["instruction"]["maxLength"] == 100


def test_parse_json():
    text = json.dumps({"tasks": [_task(), _task(instruction="List three causes of anemia in adults.", input="")]})
    tasks, reasons = it.format_output(text, structured=True)
    assert reasons == [] and len(tasks) == 2
    assert tasks[1]["input"] == NO_INPUT


def test_truncated_json_keeps_complete_tasks():
    full = json.dumps({"tasks": [_task(), _task(instruction="Describe the stages of CKD."), _task()]})
    cut = full[: full.rindex("{") + 20]
    tasks, reasons = it.format_output(cut, structured=True)
    assert len(tasks) == 2
    assert any("truncated" in r for r in reasons)


def test_invalid_fields_are_reasons_not_crashes():
    text = json.dumps({"tasks": [_task(type="Poetry"), _task(difficulty=9), _task(instruction="  "), {"type": "Chat"}, 5]})
    tasks, reasons = it.format_output(text, structured=True)
    assert tasks == []
    assert len(reasons) == 5
    assert any("unknown task type" in r for r in reasons)
    assert any("outside 1-5" in r for r in reasons)
    assert any("empty instruction" in r for r in reasons)
    assert any("missing field" in r for r in reasons)


def test_garbage_and_empty():
    assert it.format_output("", True) == ([], ["empty output"])
    tasks, reasons = it.format_output("lorem ipsum dolor", False)
    assert tasks == [] and "no task could be parsed" in reasons[0]


TEXT = """###
4. Type: Open Q&A
4. Topic: Nephrology
4. View: Patient
4. Difficulty: 2
4. Instruction: What does a high creatinine level mean for my kidneys?
4. Input:
<noinput>
5. Type: Summarization
5. Topic: Oncology
5. View: Oncologist
5. Difficulty: 4
5. Instruction: Summarize the pathology findings for the tumour board.
5. Input:
Core biopsy shows invasive ductal carcinoma.
Grade 2, ER positive.
###
6. Type: Chat
6. Topic: Pediatrics
6. View: Parent
6. Difficulty: 1
6. Instruction: Reassure a parent whose child has a mild fever and explain when to call a doctor.
6. Input:
My son is 3 and has 38.2 C.
###
7. Type: Classification
7. Topic: Derm"""


def test_text_parser_does_not_leak_next_task_into_input():
    tasks, reasons = it.format_output(TEXT, structured=False)
    assert [t["topic"] for t in tasks] == ["Nephrology", "Oncology", "Pediatrics"]
    assert tasks[0]["input"] == NO_INPUT  # AlpaCare's parser would glue "5. Type: ..." onto this
    assert tasks[1]["input"] == "Core biopsy shows invasive ductal carcinoma.\nGrade 2, ER positive."
    assert "Type" not in tasks[2]["input"]
    # the truncated task 7 becomes a reason, not a crash
    assert len(reasons) == 1 and "missing field" in reasons[0]


def test_text_parser_accepts_unnumbered_fields():
    raw = it.parse_text_tasks("Type: Chat\nTopic: ENT\nView: Patient\nDifficulty: 1\nInstruction: Hi there doc?\nInput: <noinput>")
    assert raw[0]["instruction"] == "Hi there doc?"
