"""Fuzzing the option guard (issue 21) with generated options that mix eponyms, drugs, names,
dates, phone numbers and addresses. Two directions, checked on every example:

* no generated identifier survives (the name's words, the phone's digits, the date, the street);
* no generated eponym or drug inside a medical phrase is changed.

Segments are joined by punctuation (", ", "; ", ". "), as clauses of an option are; a name written
right before an eponym with only a space between ("Call Villalobos Crohn disease") is outside what
the guard promises (docs/privacy.md). Example counts stay modest (``MEDFORGE_FUZZ_EXAMPLES``,
default 40) so the unit suite stays fast; the runs are derandomised unless ``MEDFORGE_FUZZ_RANDOM=1``.
"""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from medforge.privacy.eponyms import STRONG_HEADS
from medforge.privacy.guard import guard_option, row_terms
from medforge.privacy.lexicon import common_words, eponym_words, first_names, medical_words, person_names
from medforge.privacy.vocab import load_vocabulary, name_denylist

EXAMPLES = int(os.environ.get("MEDFORGE_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("MEDFORGE_FUZZ_RANDOM") != "1",
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

VOCAB = load_vocabulary()
_COMMON = common_words()
# the hard case: eponyms that are also census person names ("Crohn", "Bell", "Whipple", "Graves")
EPONYMS = sorted(w for w in eponym_words() & (person_names() | name_denylist())
                 if w.isascii() and len(w) >= 4 and w not in _COMMON)
FIRSTS = sorted(w for w in first_names() if w.isascii() and len(w) >= 4 and w not in _COMMON and w not in eponym_words())
SURNAMES = sorted(w for w in person_names() - first_names()
                  if w.isascii() and len(w) >= 5 and w not in _COMMON and w not in eponym_words()
                  and w not in medical_words(VOCAB))[:20000]
HEADS = sorted({"disease", "syndrome", "sign", "palsy", "law", "procedure", "maneuver", "test", "reflex",
                "phenomenon", "triad"} & STRONG_HEADS)
DRUGS = ["metformin", "lisinopril", "amoxicillin", "warfarin", "apixaban", "levothyroxine", "omeprazole",
         "ceftriaxone", "furosemide", "prednisone", "methotrexate", "sumatriptan", "spironolactone", "insulin glargine"]
STREET = ["Lane", "Street", "Avenue", "Road", "Drive", "Court"]
MONTHS = ["January", "March", "April", "June", "August", "October", "December"]

# a rare name on no list: only the allowlist can stop it
rare_word = st.from_regex(r"[A-Z][bcdfghjklmnpqrstvwxz][aeiouy][bcdfghjklmnpqrstvwxz]{2}[aeiou][a-z]{0,4}",
                          fullmatch=True).filter(
    lambda w: w.lower() not in _COMMON and w.lower() not in medical_words(VOCAB) and w.lower() not in eponym_words())


@st.composite
def eponym_phrase(draw) -> str:
    name = draw(st.sampled_from(EPONYMS)).capitalize()
    if draw(st.booleans()):
        name = f"{name}-{draw(st.sampled_from(EPONYMS)).capitalize()}"
    poss = draw(st.sampled_from(["", "'s"]))
    return f"{draw(st.sampled_from(['', 'Suspect ', 'Consistent with ', 'Rule out ']))}{name}{poss} " \
           f"{draw(st.sampled_from(HEADS))}"


@st.composite
def drug_phrase(draw) -> str:
    return f"{draw(st.sampled_from(['Start', 'Give', 'Switch to', 'Continue']))} {draw(st.sampled_from(DRUGS))} " \
           f"{draw(st.integers(1, 99))} mg"


@st.composite
def identifier(draw) -> tuple[str, list[str]]:
    """An identifier phrase and the strings that must not survive."""
    kind = draw(st.sampled_from(["census_name", "rare_name", "title", "phone", "date", "address", "eponym_person"]))
    if kind == "census_name":
        first, last = draw(st.sampled_from(FIRSTS)).capitalize(), draw(st.sampled_from(SURNAMES)).capitalize()
        lower = draw(st.booleans())
        text = f"{first} {last}".lower() if lower else f"{first} {last}"
        return f"{draw(st.sampled_from(['Call', 'Ask', 'Notify', 'Refer to']))} {text}", [first, last]
    if kind == "rare_name":
        a, b = draw(rare_word), draw(rare_word)
        return f"{draw(st.sampled_from(['Call', 'Ask', 'Discharge with']))} {a} {b}", [a, b]
    if kind == "title":
        last = draw(st.sampled_from(SURNAMES + EPONYMS)).capitalize()
        return f"{draw(st.sampled_from(['Ask Dr.', 'Defer to Mr.', 'Tell Mrs.', 'Page Dr']))} {last}", [last]
    if kind == "eponym_person":  # an eponym that is a person here: "his wife Mary Crohn"
        first, last = draw(st.sampled_from(FIRSTS)).capitalize(), draw(st.sampled_from(EPONYMS)).capitalize()
        return f"{draw(st.sampled_from(['Ask his wife', 'Her husband', 'Her son']))} {first} {last}", [first, last]
    if kind == "phone":
        a, b, c = draw(st.integers(201, 989)), draw(st.integers(200, 999)), draw(st.integers(1000, 9999))
        fmt = draw(st.sampled_from(["{a}-{b}-{c}", "({a}) {b}-{c}", "{a}.{b}.{c}", "{a} {b} {c}"]))
        return f"Call {fmt.format(a=a, b=b, c=c)}", [f"{c}"]
    if kind == "date":
        if draw(st.booleans()):
            d = f"{draw(st.integers(1, 12)):02d}/{draw(st.integers(1, 28)):02d}/{draw(st.integers(1950, 2030))}"
        else:
            d = f"{draw(st.sampled_from(MONTHS))} {draw(st.integers(1, 28))}, {draw(st.integers(1950, 2030))}"
        return f"Seen on {d}", [d]
    number, street = draw(st.integers(100, 9999)), draw(rare_word)  # doses are 1-99 mg: no clash
    return f"Home care at {number} {street} {draw(st.sampled_from(STREET))}", [street, str(number)]


@st.composite
def option(draw) -> tuple[str, list[str], list[str]]:
    """(option text, identifier strings, medical phrases)."""
    parts: list[tuple[str, bool]] = []
    secrets: list[str] = []
    medical: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        choice = draw(st.integers(0, 2))
        if choice == 0:
            text = draw(eponym_phrase())
            medical.append(text)
        elif choice == 1:
            text = draw(drug_phrase())
            medical.append(text)
        else:
            text, s = draw(identifier())
            secrets += s
        parts.append((text, choice < 2))
    # an eponym that is a person's name elsewhere in the option is withheld everywhere (the row rule):
    # keep the two directions apart by never drawing one word in both roles
    secret_words = {w.lower() for s in secrets for w in re.findall(r"[A-Za-z]+", s)}
    med_words = {w.lower() for m in medical for w in re.findall(r"[A-Za-z]+", m)}
    assume(not secret_words & med_words)
    sep = draw(st.sampled_from([", ", "; ", ". "]))
    if sep != ". ":  # inside a sentence a clause's verb is in lower case ("...; start metformin 10 mg")
        parts = [parts[0]] + [(_lower_verb(t), m) for t, m in parts[1:]]
        medical = [_lower_verb(m) if not text_starts(parts, m) else m for m in medical]
    return sep.join(t for t, _ in parts), secrets, medical


_VERBS = ("Suspect ", "Consistent with ", "Rule out ", "Start ", "Give ", "Switch to ", "Continue ", "Call ", "Ask ",
          "Notify ", "Refer to ", "Discharge with ", "Defer to ", "Tell ", "Page ", "Her ", "Seen on ", "Home care at ")


def _lower_verb(text: str) -> str:
    return text[0].lower() + text[1:] if text.startswith(_VERBS) else text


def text_starts(parts: list[tuple[str, bool]], m: str) -> bool:
    return parts[0][0] == m


def _has(text: str, s: str) -> bool:
    return re.search(r"(?<![^\W_])" + re.escape(s.lower()) + r"(?![^\W_])", text.lower()) is not None


@FUZZ
@given(option())
def test_fuzz_no_identifier_survives_and_medicine_is_unchanged(case):
    text, secrets, medical = case
    terms, _, _ = row_terms("A 50-year-old woman has fatigue.", {"A": text}, VOCAB)
    out = guard_option(text, VOCAB, terms)
    survived = [s for s in secrets if _has(out, s)]
    assert not survived, f"{survived} survived in {out!r} (from {text!r})"
    changed = [m for m in medical if m not in out]
    assert not changed, f"{changed} changed: {out!r} (from {text!r})"


@pytest.mark.parametrize("seed_option", ["Crohn disease; Call Mary Whitfield", "Bell palsy, Ask Dr. Okafor"])
def test_fuzz_shape_examples(seed_option):
    # the shapes the fuzzer draws, written out once so a reader sees them
    terms, _, _ = row_terms("A 50-year-old woman.", {"A": seed_option}, VOCAB)
    out = guard_option(seed_option, VOCAB, terms)
    assert out.split(";" if ";" in seed_option else ",")[0] == seed_option.split(";" if ";" in seed_option else ",")[0]
    assert "[REDACTED]" in out
