"""Reply gates on crafted teacher replies: every gate rejects its defect, and good replies all pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medforge.generate.response_checks import (
    GATES,
    ResponseCheckConfig,
    check_response,
    echo_gate,
    empty_gate,
    language_gate,
    refusal_gate,
    repetition_gate,
    tandem_repeat,
)

CFG = ResponseCheckConfig()

# ----------------------------------------------------------------------------- good replies
DKA_STEPS = """Management of diabetic ketoacidosis (DKA) in adults:

1. Assess airway, breathing and circulation, and obtain IV access with two large-bore cannulas.
2. Send blood for glucose, ketones, venous blood gas, electrolytes, urea and creatinine.
3. Start fluid resuscitation with 0.9% sodium chloride: 1 litre over the first hour, then adjust to the
   patient's haemodynamic status and urine output.
4. Start a fixed-rate intravenous insulin infusion at 0.1 units/kg/hour once potassium is known.
5. Replace potassium: add 40 mmol/L to the fluids when potassium is between 3.5 and 5.5 mmol/L.
6. When glucose falls below 14 mmol/L, add 10% glucose alongside the saline so insulin can continue.
7. Monitor glucose hourly, ketones and potassium every two hours, and look for a precipitating cause
   such as infection, missed insulin doses or myocardial infarction.
8. DKA has resolved when ketones are below 0.6 mmol/L and venous pH is above 7.3; then switch to
   subcutaneous insulin with a meal, overlapping the infusion by 30 minutes.

Consult your local protocol, and involve the diabetes team early."""

BLOOD_PRESSURE = (
    "Blood pressure should be measured with a validated device. Before the blood pressure reading, the patient "
    "sits for five minutes with the arm supported at heart level. Take two blood pressure readings one minute "
    "apart and record the lower one. If the clinic blood pressure is 140/90 mmHg or higher, offer ambulatory "
    "blood pressure monitoring to confirm hypertension, because home blood pressure and ambulatory blood pressure "
    "avoid white-coat effects. Treat when the ambulatory blood pressure average is 135/85 mmHg or higher and there "
    "is target organ damage, cardiovascular disease, renal disease or diabetes."
)

PARALLEL = """Type 1 diabetes:
- Common symptoms: excessive thirst, frequent urination, fatigue, weight loss and blurred vision.
- Treatment: insulin injections or a pump, carbohydrate counting, and glucose monitoring.

Type 2 diabetes:
- Common symptoms: excessive thirst, frequent urination, fatigue, blurred vision and slow-healing sores.
- Treatment: lifestyle changes such as diet and exercise, metformin, and glucose monitoring.

Both types need regular checks of HbA1c, blood pressure, lipids, kidney function, eyes and feet."""

HEDGED = (
    "Without examining you, I cannot give a definitive diagnosis. However, pain on the outer side of the elbow "
    "that worsens when you grip or lift is typical of lateral epicondylitis (tennis elbow). It is an overuse "
    "injury of the common extensor tendon. Rest from aggravating activities, ice for 15 minutes a few times a day, "
    "a counterforce brace and eccentric wrist-extensor exercises help most people within weeks to months. "
    "See a doctor if the pain follows an injury, the elbow is swollen or hot, or you have numbness in the hand. "
    "This information is not a substitute for professional medical advice."
)

MC = ("Metformin lowers hepatic glucose output and does not cause weight gain, so it is first-line in type 2 "
      "diabetes with obesity.\n\nThe answer is (C).")

GOOD = {
    "dka_steps": (DKA_STEPS, "How should diabetic ketoacidosis be managed in adults?", ""),
    "repeated_terms": (BLOOD_PRESSURE, "How should hypertension be diagnosed in clinic?", ""),
    "parallel_lists": (PARALLEL, "Compare type 1 and type 2 diabetes.", ""),
    "clinician_hedge": (HEDGED, "I have pain on the outside of my elbow. What could it be?", ""),
    "yes": ("Yes.", "Is ibuprofen a non-steroidal anti-inflammatory drug? Answer yes or no.", ""),
    "no": ("No", "Is amoxicillin effective against viral infections? Answer yes or no.", ""),
    "mc": (MC, "Which drug is first-line for type 2 diabetes?", "(A) Insulin (B) Glipizide (C) Metformin (D) Acarbose"),
    "restates_then_answers": (
        "The common symptoms of iron deficiency anaemia are fatigue, pallor, breathlessness on exertion, "
        "palpitations, brittle nails, hair loss and pica.",
        "List the common symptoms of iron deficiency anaemia.", ""),
    "short_restating_answer": ("The first-line drug for type 2 diabetes is metformin.",
                               "What is the first-line drug for type 2 diabetes?", ""),
    "restated_wrong_answer": ("The infectious disease that is caused by the bacterium Staphylococcus aureus is COVID-19.",
                              "What infectious disease is caused by the bacterium Staphylococcus aureus?", ""),
    "rewrite_of_input": (
        "The patient has had a cough and fever for three days and feels short of breath.",
        "Rewrite the following note in plain language.",
        "Pt c/o cough and fever x3 days, feels SOB."),
    "latin_and_names": (
        "Rivaroxaban, apixaban and edoxaban inhibit factor Xa; dabigatran inhibits thrombin. Smith et al. "
        "showed fewer intracranial bleeds than with warfarin, in vivo and in the ARISTOTLE trial.",
        "Name the direct oral anticoagulants and their targets.", ""),
    "table": ("| Drug | Class |\n| --- | --- |\n| Lisinopril | ACE inhibitor |\n| Losartan | ARB |\n"
              "| Amlodipine | Calcium channel blocker |", "Tabulate three antihypertensives and their classes.", ""),
    "single_term_list": ("1. Metformin\n2. Gliclazide\n3. Sitagliptin\n4. Empagliflozin\n5. Pioglitazone",
                         "List five oral drugs for type 2 diabetes.", ""),
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_replies_pass_every_gate(name):
    text, instruction, input_text = GOOD[name]
    result = check_response(text, CFG, instruction=instruction, input_text=input_text, finish_reason="stop")
    assert result.ok, (name, result)
    assert not result.truncated


# ----------------------------------------------------------------------------- defects
DEMO_LOOP = ("She believes that having healthy lifestyle can help you live long life. "
             + "This is a medical advice. " * 8)


@pytest.mark.parametrize("text", [
    DEMO_LOOP,
    "Drink water and rest. " * 3,
    "the " * 12,
    "1. Drink water.\n2. Drink water.\n3. Drink water.\n4. Drink water.",
    "Rest is important for recovery from the flu.\nFluids matter.\nRest is important for recovery from the flu.\n"
    "Take paracetamol.\nRest is important for recovery from the flu.",
    # a loop with a counter inside: no back-to-back copy, no identical sentence or line
    " ".join(f"Step {i}: check the blood pressure and the heart rate and the oxygen saturation again." for i in range(12)),
])
def test_loops_are_repetition(text):
    assert repetition_gate(text) is not None
    assert check_response(text, CFG).gate == "repetition"


def test_gopher_thresholds_at_scale_one_are_gophers_own():
    # Parallel lists pass at the default scale but fail Gopher's own n-gram thresholds
    text = PARALLEL.replace("Both types", "Type 1 diabetes: excessive thirst, frequent urination, fatigue. Both types")
    words = len(text.split())
    assert words >= 50
    assert repetition_gate(text, ngram_threshold_scale=3.0) is None
    assert repetition_gate(text, ngram_threshold_scale=1.0) is not None


def test_ngram_rules_need_enough_words():
    short = "type 2 diabetes is common; type 2 diabetes is treatable"
    assert repetition_gate(short, ngram_threshold_scale=1.0) is None  # under 50 words: only line/sentence/tandem rules


def test_tandem_repeat_finds_back_to_back_copies_only():
    assert tandem_repeat("a b c a b c a b c".split()) == (3, 0)
    assert tandem_repeat("x y a b c a b c a b c z".split()) == (3, 2)
    assert tandem_repeat("a b c a b c".split()) is None  # two copies are not a loop
    assert tandem_repeat("very very very".split()) is None  # under 8 words in all
    assert tandem_repeat(["no"] * 8) == (1, 0)


@pytest.mark.parametrize("text", [
    "As an AI language model, I cannot provide medical advice. Please consult a doctor.",
    "I'm sorry, but I can't help with that request.",
    "I cannot provide medical advice. Please see your physician.",
    "I'm not a doctor, but rest and fluids usually help a cold get better within a week or so.",
    "This is not medical advice. Please consult a healthcare professional.",
    "As a language model, I do not have access to your records, but metformin is usually first-line.",
])
def test_refusals_and_disclaimers(text):
    assert refusal_gate(text) is not None
    assert check_response(text, CFG).gate == "refusal"


def test_consult_a_doctor_is_not_a_refusal():
    assert refusal_gate("Yes, you should consult your doctor within 24 hours if the fever persists.") is None
    assert refusal_gate(HEDGED) is None


@pytest.mark.parametrize("text", ["", "   \n\n", "...", "- - -", "\u200b"])
def test_empty(text):
    assert empty_gate(text) is not None
    assert check_response(text, CFG).gate == "empty"


@pytest.mark.parametrize("text,instruction", [
    ("List the common symptoms of iron deficiency anemia.", "List the common symptoms of iron deficiency anemia."),
    ("The common symptoms of iron deficiency anemia are listed.", "List the common symptoms of iron deficiency anemia."),
    ("Therapeutic cells based on CRISPR RNA editable gene editing.",
     "Describe therapeutic cells based on CRISPR RNA gene editing."),
    ("Explain how metformin works in type 2 diabetes. Please explain.",
     "Explain how metformin works in type 2 diabetes."),
])
def test_echo_of_the_instruction(text, instruction):
    assert echo_gate(text, instruction) is not None
    assert check_response(text, CFG, instruction=instruction).gate == "echo"


def test_echo_needs_an_instruction_and_is_rouge_l():
    assert echo_gate("anything at all", "") is None
    # the gate's score is ROUGE-L F1 with the instruction (medforge.rouge, tested in tests/unit/test_rouge.py)
    assert echo_gate("a b c d e f g", "a b c d e f g h") is not None  # F1 0.93 >= 0.7, nothing new
    assert echo_gate("a b c d e f g", "a b c d x y z w") is None  # F1 0.53 < 0.7


@pytest.mark.parametrize("text", [
    "La diabetes es una enfermedad crónica que afecta la forma en que el cuerpo usa la glucosa y es muy común.",
    "Le diabète est une maladie chronique qui touche la façon dont le corps utilise le glucose et elle est fréquente.",
    "Diabetes ist eine chronische Krankheit, die sich auf den Zuckerstoffwechsel auswirkt und sehr häufig ist, "
    "und sie wird oft nicht erkannt.",
    "糖尿病是一种慢性疾病，影响身体利用葡萄糖的方式，非常常见。",
    "Сахарный диабет — это хроническое заболевание, которое влияет на обмен глюкозы в организме.",
])
def test_not_english(text):
    assert language_gate(text) is not None
    assert check_response(text, CFG).gate == "not_english"


def test_truncated_uses_the_finish_reason_only():
    text = DKA_STEPS[:400]  # cut mid-sentence, but the engine said it stopped: kept
    assert check_response(text, CFG, finish_reason="stop").ok
    assert check_response(text, CFG, finish_reason="").ok  # unknown: never guessed from the text
    cut = check_response(DKA_STEPS, CFG, finish_reason="length")
    assert cut.gate == "truncated" and not cut.ok
    kept = check_response(DKA_STEPS, CFG.model_copy(update={"keep_truncated": True}), finish_reason="length")
    assert kept.ok and kept.truncated
    # a loop that ran into the limit is a loop, and is never kept
    loop = check_response(DEMO_LOOP, CFG.model_copy(update={"keep_truncated": True}), finish_reason="length")
    assert loop.gate == "repetition"


def test_gate_selection_and_switch():
    assert check_response(DEMO_LOOP, CFG.model_copy(update={"gates": ["empty", "refusal"]})).ok
    assert check_response("", CFG.model_copy(update={"enabled": False})).ok
    assert check_response(DKA_STEPS, CFG.model_copy(update={"gates": ["empty"]}), finish_reason="length").ok
    assert set(ResponseCheckConfig().gates) == set(GATES)


def test_config_rejects_unknown_gate():
    with pytest.raises(ValueError):
        ResponseCheckConfig(gates=["empty", "vibes"])


# ----------------------------------------------------------------------------- real teacher answers
DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "alpacare" / "MedInstruct-test.jsonl"
DEMO = Path(__file__).resolve().parents[3] / "src" / "medforge" / "pipeline" / "data" / "demo_questions.jsonl"


def test_reference_answers_of_strong_teachers_pass_the_content_gates():
    """Good answers: loops, echoes, foreign language and empties are (nearly) absent there, so the gates
    must (nearly) never fire on them. The demo's own reference answers always; with AlpaCare's
    MedInstruct-test in ../shared, also GPT-4, Claude 2, GPT-3.5 and text-davinci-003 answers (refusals
    are real there, GPT-3.5's "As an AI language model", and are not counted)."""
    content = ResponseCheckConfig(gates=["empty", "repetition", "echo", "not_english"])
    sets = [(DEMO, "reference", 0)]
    if DATA.is_file():
        sets += [(DATA, "gpt-4-answer", 0), (DATA, "claude-2", 0), (DATA, "gpt-3.5-turbo-answer", 0),
                 (DATA, "text-davinci-003-answer", 3)]
    for path, key, allowed in sets:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        assert sum(bool(r.get(key)) for r in rows) >= 6, (path, key)
        failed = [r["id"] for r in rows if r.get(key) and not check_response(r[key], content, instruction=r["instruction"]).ok]
        assert len(failed) <= allowed, (key, failed)
