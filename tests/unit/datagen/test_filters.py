from medforge.datagen.filters import TaskFilterConfig, TaskFilters


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
