"""Medical context decides (issue 21): eponyms in a medical phrase pass, the same words in a
person's context are withheld; options without PHI reach the teacher exactly as written."""

import json
import re

import pytest

from medforge.privacy.eponyms import eponym_spans
from medforge.privacy.guard import guard_option, row_terms
from medforge.privacy.keywords import KeywordConfig, extract_keywords
from medforge.privacy.lexicon import eponym_words
from medforge.privacy.phi import REDACTED
from medforge.privacy.recheck import normalise, second_pass


@pytest.fixture(scope="module")
def vocab():
    from medforge.privacy.vocab import load_vocabulary

    return load_vocabulary()


def _guard(option: str, vocab, question: str = "A 40-year-old woman has fatigue.") -> str:
    terms, _, _ = row_terms(question, {"A": option}, vocab)
    return guard_option(option, vocab, terms)


def _has_word(text: str, word: str) -> bool:
    return re.search(r"(?<![^\W_])" + re.escape(word.lower()) + r"(?![^\W_])", text.lower()) is not None


def test_eponym_list_is_built_from_the_vocabularies():
    words = eponym_words()
    # from ICD-10-CM titles / inclusion terms, HPO names and HPO's disease annotations
    assert {"crohn", "sheehan", "conn", "plummer", "whipple", "sequard", "bell", "graves"} <= words
    assert "the" not in words and all(w.isalpha() for w in words)


@pytest.mark.parametrize("option", [
    "Crohn disease", "Crohn's disease", "Bell palsy", "Bell's palsy", "Whipple disease", "Plummer disease",
    "Brown-Sequard syndrome", "Brown-Séquard syndrome", "Conn syndrome", "Sheehan syndrome", "Graves' disease",
    "Bell Palsy", "crohn disease", "Whipple procedure", "Starling's law", "Frank-Starling law", "Epley maneuver",
    "Valsalva maneuver", "Babinski sign", "Chvostek sign", "Trousseau sign", "Romberg test", "Murphy sign",
    "Hodgkin lymphoma", "Barrett esophagus", "Virchow node", "Zollinger-Ellison syndrome", "Kartagener syndrome",
    "Billroth II gastrectomy", "Addison disease", "Gilbert syndrome", "Cushing syndrome", "Wilson disease",
    "Bleeding from a Meckel diverticulum", "Cipro 500 mg twice daily", "Anti-Ro/SSA", "Rapid strep test",
    "Circle of Willis", "Pouch of Douglas", "Morison pouch", "Reed-Sternberg cells", "Gleason score",
])
def test_eponym_option_passes_whole(option, vocab):
    assert _guard(option, vocab) == option


@pytest.mark.parametrize("option, secret", [
    ("Ask his wife Mary Crohn", "crohn"),
    ("Ask his wife Mary Crohn", "mary"),
    ("Call Crohn at 555-201-8890", "crohn"),
    ("Defer to Dr. Bell", "bell"),
    ("Refer to dr. bell", "bell"),
    ("Mr. Whipple should decide", "whipple"),
    ("Mrs. Plummer's daughter signs the consent", "plummer"),
    ("Crohn's wife will bring the records", "crohn"),
    ("Ask the wife of Douglas Henle", "henle"),
    ("Call Ababba Otobbaaa", "otobbaaa"),  # found by the fuzzer: "oto" + letters is no medical word
    ("Call Ababba Otobbaaa", "ababba"),
    ("Mary Crohn disease clinic", "mary"),
])
def test_eponym_word_in_a_persons_context_is_withheld(option, secret, vocab):
    out = _guard(option, vocab)
    assert REDACTED in out and not _has_word(out, secret), out


def test_eponym_spans_both_directions(vocab):
    def words(text):
        return [text[a:b] for a, b in eponym_spans(text, vocab)]

    assert words("Crohn's disease") == ["Crohn", "s", "disease"]
    assert words("Brown-Séquard syndrome") == ["Brown", "Séquard", "syndrome"]
    assert words("Reed-Sternberg cells") == ["Reed", "Sternberg", "cells"]  # hyphen-joined: one eponym
    assert sorted(words("Loop of Henle")) == ["Henle", "Loop"]
    assert words("his wife Mary Crohn") == [] and words("Call Crohn at 555-201-8890") == []
    assert words("Dr. Bell palsy") == []  # a title before it: a person
    assert words("Crohn's wife") == []


def test_row_term_still_beats_the_eponym(vocab):
    # the person Graves is named in the row: "Graves disease" is withheld too (issue 13's rule stands)
    g = extract_keywords("Mrs. Jennifer Graves, a 50-year-old woman, has palpitations and tremor.",
                         {"A": "Graves disease", "B": "Toxic multinodular goiter"}, KeywordConfig(), vocab)
    assert "graves" not in json.dumps(g.payload()).lower()
    assert g.options["B"] == "Toxic multinodular goiter"


def test_eponym_in_question_is_not_a_name(vocab):
    q = "A 30-year-old woman with Graves disease and Bell palsy has palpitations."
    g = extract_keywords(q, {"A": "Methimazole", "B": "Propranolol"}, KeywordConfig(), vocab)
    assert "graves disease" in g.keywords and "bell palsy" in g.keywords, g.keywords
    assert g.options == {"A": "Methimazole", "B": "Propranolol"}


@pytest.mark.parametrize("option, secret", [
    ("Call ５５５-２０１-８８９０", "８８９０"),           # full-width digits: NFKC makes them a phone number
    ("Call 555\u200b-201-8890", "8890"),               # a zero-width space splits the scrubber's tokens
    ("Notify 555 201 88 90 today", "88 90"),          # digits spread over whitespace chunks
    ("Interrogate PMX99812Q", "pmx99812q"),
])
def test_second_pass_catches_what_tokens_split(option, secret, vocab):
    spans = second_pass(option, vocab)
    assert spans, option
    out = _guard(option, vocab)
    assert REDACTED in out and secret.lower() not in out.lower(), out


def test_second_pass_finds_nothing_in_medical_options(vocab):
    for option in ["HbA1c of 7.5%", "COVID-19 pneumonia", "CA-125 level", "HLA-B27 testing", "Insulin glargine 10 units",
                   "Epinephrine 1:10,000", "120/80 mmHg", "Vitamin B12 deficiency", "5-HT3 antagonist"]:
        assert second_pass(option, vocab) == [], option


def test_normalise_maps_back_to_the_original():
    norm, index = normalise("a\u200bｂ")
    assert norm == "ab" and index[:2] == [0, 2]


# The six USMLE-style questions of issue 21, run as a new user would: through `medforge keywords`.
SIX = [
    {"id": "q1", "question": "A 24-year-old man has crampy abdominal pain, diarrhea and weight loss. Colonoscopy shows "
     "skip lesions and cobblestoning of the terminal ileum. Which of the following is the most likely diagnosis?",
     "options": ["Crohn disease", "Ulcerative colitis", "Whipple disease", "Celiac disease"]},
    {"id": "q2", "question": "A 41-year-old woman cannot close her right eye or wrinkle her forehead on the right. "
     "Which of the following is the most likely diagnosis?",
     "options": ["Bell palsy", "Ischemic stroke", "Ramsay Hunt syndrome", "Guillain-Barre syndrome"]},
    {"id": "q3", "question": "A 67-year-old woman has palpitations and heat intolerance; a scan shows several hot "
     "nodules. Which of the following is the most likely diagnosis?",
     "options": ["Plummer disease", "Graves disease", "Hashimoto thyroiditis", "Subacute thyroiditis"]},
    {"id": "q4", "question": "A 30-year-old man was stabbed in the back; he has ipsilateral weakness and contralateral "
     "loss of pain and temperature sensation. Which of the following is the most likely diagnosis?",
     "options": ["Brown-Sequard syndrome", "Anterior cord syndrome", "Central cord syndrome", "Tabes dorsalis"]},
    {"id": "q5", "question": "A 45-year-old man has resistant hypertension and hypokalemia with low renin. "
     "Which of the following is the most likely diagnosis?",
     "options": ["Conn syndrome", "Cushing syndrome", "Pheochromocytoma", "Renal artery stenosis"]},
    {"id": "q6", "question": "A 32-year-old woman had postpartum hemorrhage and now has amenorrhea, fatigue and "
     "hyperpigmentation is absent. Which of the following is the most likely diagnosis?",
     "options": ["Sheehan syndrome", "Addison disease", "Asherman syndrome", "Prolactinoma"]},
]


def test_six_usmle_questions_through_the_keywords_cli(tmp_path):
    from medforge.cli import main

    src = tmp_path / "six.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in SIX))
    out = tmp_path / "out.jsonl"
    assert main(["keywords", "--input", str(src), "--output", str(out)]) == 0
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    for r in SIX:
        sent = list(rows[r["id"]]["options"].values())
        assert sent == r["options"], f"{r['id']}: {sent}"  # every option exactly as written
    assert "skip lesions" in rows["q1"]["keywords"]
    assert "forehead" in rows["q2"]["keywords"]
    assert "hyperpigmentation" in rows["q6"]["keywords"]
    assert REDACTED not in out.read_text()


def test_unknown_capitalised_word_of_the_question_is_withheld_from_options(vocab):
    # "Millbrook" is on no list: in an option it would look like an eponym before "test"
    q = "A 61-year-old woman of Millbrook is brought by her nephew Tadeusz Wierzbicki for falls."
    opts = {"A": "Millbrook test", "B": "Wierzbicki position", "C": "Gleason score", "D": "Trendelenburg position"}
    g = extract_keywords(q, opts, KeywordConfig(), vocab)
    sent = json.dumps(g.payload()).lower()
    assert "millbrook" not in sent and "wierzbicki" not in sent
    assert g.options["C"] == "Gleason score" and g.options["D"] == "Trendelenburg position"
    assert "unlisted" not in g.phi_kinds  # a suspicion, not an identifier found
