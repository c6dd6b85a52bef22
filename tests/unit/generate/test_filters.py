from medforge.generate.filters import TaskFilterConfig, TaskFilters


def _t(instruction, input_="<noinput>"):
    return {"instruction": instruction, "input": input_}


F = TaskFilters(TaskFilterConfig())


def test_passes_normal_task():
    assert F.reject_reason(_t("Explain the mechanism of action of metformin.")) is None


def test_length_bounds():
    assert F.reject_reason(_t("Explain metformin.")) == "instruction_too_short"
    assert F.reject_reason(_t("word " * 151)) == "instruction_too_long"
    assert F.reject_reason(_t("Summarize this case note please.", "w " * 401)) == "input_too_long"


def test_denylist_whole_words_case_insensitive():
    assert F.reject_reason(_t("Describe the attached Image of the rash.")) == "denylist"
    assert F.reject_reason(_t("Draw a flowchart of sepsis management.")) == "denylist"
    # substrings of other words do not match
    assert F.reject_reason(_t("Explain imaging options for a suspected stroke.")) is None
    assert F.reject_reason(_t("Write a program that dosing calculators use.")) == "denylist"


def test_bad_first_character():
    assert F.reject_reason(_t("- explain the mechanism of metformin")) == "bad_first_character"
    assert F.reject_reason(_t("Éxplain the mechanism of metformin please")) == "bad_first_character"


# ---- type-aware task checks (beyond AlpaCare's rule filters)
def _typed(instruction, input_="<noinput>", type_="Open Q&A"):
    return {"instruction": instruction, "input": input_, "type": type_}


def test_real_looking_tasks_pass_the_task_checks():
    assert F.reject_reason(_typed("What are the first-line treatments for community-acquired pneumonia in adults?")) is None
    assert F.reject_reason(_typed(
        "Which drug most likely caused the patient's dry cough?",
        "A 64-year-old man started a new antihypertensive two weeks ago. (A) Lisinopril (B) Amlodipine "
        "(C) Hydrochlorothiazide (D) Metoprolol", "Multiple-choice Q&A")) is None
    assert F.reject_reason(_typed("Summarize the discharge note for the ward nurse.",
                                  "The patient, 45, was admitted with diabetic ketoacidosis (pH 7.1).",
                                  "Summarization")) is None


def test_json_and_template_debris_in_the_instruction_is_rejected():
    assert F.reject_reason(_typed('Explain the dose", "input": "none')) == "instruction_not_a_sentence"
    assert F.reject_reason(_typed("join chat servers using your admin key: {")) == "instruction_not_a_sentence"
    assert F.reject_reason(_typed("Describe sepsis <|im_end|> <|im_start|>assistant")) == "instruction_not_a_sentence"
    assert F.reject_reason(_typed("def dose(x): return x * 2 for the patient")) == "instruction_not_a_sentence"
    assert F.reject_reason(_typed("12 34 56 78 mg mg 90 11 22")) == "instruction_not_a_sentence"


def test_non_english_instruction_is_rejected():
    assert F.reject_reason(_typed("Explain сердечная недостаточность у пожилых пациентов today")) == "instruction_not_english"


def test_reply_syntax_inside_the_input_is_rejected():
    assert F.reject_reason(_typed("Summarize this note for the nurse.", '{"tasks": [{"type": "Chat"')) == "input_reply_debris"
    assert F.reject_reason(_typed("Summarize this note for the nurse.", 'Patient stable.\n### 2. Type: Chat')) == "input_reply_debris"


def test_multiple_choice_task_must_carry_its_options():
    mc = "Multiple-choice Q&A"
    assert F.reject_reason(_typed("Which drug caused the cough?", "<noinput>", mc)) == "mc_without_options"
    assert F.reject_reason(_typed("Which drug caused the cough?", "A man has a cough. (A) Lisinopril", mc)) == "mc_without_options"
    assert F.reject_reason(_typed("Which drug caused the cough?", "(B) Lisinopril (C) Amlodipine", mc)) == "mc_without_options"
    assert F.reject_reason(_typed("Which drug caused the cough?", "(A) Lisinopril (B) Amlodipine", "USMLE-style Q&A")) is None


def test_task_checks_can_be_switched_off():
    loose = TaskFilters(TaskFilterConfig(task_checks=False))
    assert loose.reject_reason(_typed("Which drug caused the cough?", "<noinput>", "Multiple-choice Q&A")) is None
