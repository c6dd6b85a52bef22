"""Medical context decides whether a capitalised word is a name: "Crohn disease" is medicine,
"his wife Mary Crohn" and "call Crohn at 555-..." are a person.

A word is an *eponym in a medical phrase* when it stands in a run of name-like words (joined by
hyphens, spaces or "and": "Brown-Sequard", "Austin Flint", "Zollinger-Ellison"), optionally
followed by a possessive ("Crohn's", "Simmonds'"), directly before a *head*:

* any word of the run that is on the offline eponym list (``data/eponyms.txt``, built by
  ``scripts/build_eponyms.py`` from ICD-10-CM, HPO and HPO's disease annotations) counts before
  any medical head: a strong head ("disease", "syndrome", "sign", "palsy", "law", "procedure",
  "maneuver", "test", "reflex", ...), an anatomical or pathological head ("node", "esophagus",
  "diverticulum", "cells") or a medical word that is no common English word;
* a capitalised word not on the list counts before one of those heads too ("Kartagener syndrome",
  "Gleason score"), or before a word built like a procedure ("Nissen fundoplication"), but never
  as a medical word of its own;
* a drug name that is also a person name ("Cipro") counts before a dose ("Cipro 500 mg").

Person context overrides all of that: a title ("Dr. Bell", "Mr. Whipple"), a relation or naming
cue ("his wife Mary Crohn", "named Bell") just before the run, a first name opening the run that
is itself no eponym ("Mary Crohn disease" keeps "Mary" a name and the run is not medical), or a
relation just after a possessive ("Crohn's wife"). A row-wide PHI term (the guard's
:class:`~medforge.privacy.guard.RowTerms`) still wins: "Graves disease" is withheld in a row about
Mrs. Graves.
"""

from __future__ import annotations

import re
import unicodedata

from medforge.privacy.lexicon import (common_words, drug_name_collisions, eponym_words, first_names, looks_medical,
                                      medical_words, person_names)
from medforge.privacy.vocab import Vocabulary

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
#: heads that make any capitalised word before them medical (the generic rule)
STRONG_HEADS = frozenset("""
disease diseases syndrome syndromes sign signs palsy phenomenon reflex reflexes maneuver maneuvers manoeuvre
triad tetrad pentad law principle procedure operation tumor tumour tumors sarcoma lymphoma carcinoma fracture
anomaly malformation diverticulum contracture criteria classification murmur nodes nodules bodies disorder
thyroiditis encephalopathy aphasia ataxia dystrophy ulcer angina arteritis purpura anemia anaemia hernia
neuralgia neuroma lesions spots rings pupil test tests
""".split())
#: heads that make a listed eponym medical ("Barrett esophagus", "Virchow node"): common words too
EPONYM_HEADS = STRONG_HEADS | frozenset("""
node nodule body cell cells ring spot line lines point points space pouch canal duct ducts gland glands ligament
fascia nerve artery vein valve bundle block position respiration respirations breathing wave waves sphincter
plexus esophagus oesophagus cyst cysts tear tears score scale scales grade grading stage staging index formula
equation method technique incision approach repair shunt stain staining reaction effect sequence curve loop
membrane organ organs area areas zone zones crypts crypt islets islet tubules tubule capsule corpuscles
granules granule inclusion inclusions lesion plaques plaque cirrhosis thrombosis aneurysm infection fever
catheter tube forceps splint traction sinus foramen fossa layer cortex hyperplasia polyp polyps mole nevus
phenotype variant anemia cardiomyopathy neuropathy myopathy muscular retinopathy dementia rods rod features
facies gait virus delusion complex hump smear stains spotted scoring corpuscle corpuscles triangle ligaments
muscle muscles tendon exercises rule contractions tubercles patches doctrine fibers fibres jelly pupils
""".split())
#: "X of Name": the head before "of" makes the name an eponym ("circle of Willis", "loop of Henle")
OF_HEADS = EPONYM_HEADS | frozenset("""
circle loop tetralogy islets islet organ sphincter pouch ligament canal bundle ampulla crypts angle tract
triangle foramen duct ducts space spaces glands node nodes tubercle ridge column columns nucleus
""".split())
_TITLES = {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "doctor", "nurse", "sr", "sra", "mister", "sir", "madam"}
_PERSON_CUES = {
    "wife", "husband", "son", "daughter", "mother", "father", "brother", "sister", "spouse", "partner", "friend",
    "neighbor", "neighbour", "caregiver", "carer", "cousin", "aunt", "uncle", "grandson", "granddaughter",
    "grandmother", "grandfather", "boss", "colleague", "named", "called", "surname", "name", "mom", "dad",
    "fiance", "fiancee", "boyfriend", "girlfriend", "roommate", "guardian", "niece", "nephew", "coworker",
}
_UNITS_AFTER = re.compile(r"\s*\d+(?:[.,]\d+)?\s*(?:mg|g|mcg|µg|ug|ml|mL|units?|iu|IU|%|tablets?)\b")


_NUMERALS = {"I", "II", "III", "IV", "V", "VI", "1", "2", "3", "4", "5", "6"}


def fold(word: str) -> str:
    """Lower case without accents ("Séquard" -> "sequard")."""
    if word.isascii():
        return word.lower()
    return "".join(c for c in unicodedata.normalize("NFKD", word.lower()) if not unicodedata.combining(c))


def _name_like(tok: str, epo: frozenset[str]) -> bool:
    return tok[:1].isupper() or fold(tok) in epo


def eponym_spans(text: str, vocab: Vocabulary) -> list[tuple[int, int]]:
    """Character spans of the words of ``text`` that are eponyms (or name-like drugs) in a
    medical phrase and not in a person's context, and of the phrase's head ("disease", "pouch")."""
    toks = [(m.group(0), m.start(), m.end()) for m in _WORD.finditer(text)]
    if not toks:
        return []
    epo, drugs = eponym_words(), drug_name_collisions()
    med, common, firsts, names = medical_words(vocab), common_words(), first_names(), person_names()
    out: list[tuple[int, int]] = []
    i, n = 0, len(toks)
    while i < n:
        tok = toks[i][0]
        if not tok[:1].isalpha() or not _name_like(tok, epo):
            i += 1
            continue
        # the run: name-like words joined by "-", "–", a space or " and "
        j = i
        while j + 1 < n:
            gap = text[toks[j][2]:toks[j + 1][1]]
            nxt = toks[j + 1][0]
            if nxt.lower() in EPONYM_HEADS:  # "Graves Disease": a capitalised head ends the run
                break
            if gap in ("-", "\u2013", " ") and nxt[:1].isupper() and nxt.isalpha() and nxt not in _NUMERALS:
                j += 1
            elif gap == " " and nxt.lower() == "and" and j + 2 < n and toks[j + 2][0][:1].isupper() \
                    and text[toks[j + 1][2]:toks[j + 2][1]] == " ":
                j += 2
            else:
                break
        run = [k for k in range(i, j + 1) if toks[k][0].lower() != "and"]
        # possessive: "Crohn's" (tokens "Crohn", "s") or "Simmonds'"
        h = j + 1
        after = text[toks[j][2]:toks[h][1]] if h < n else text[toks[j][2]:]
        if h < n and toks[h][0].lower() == "s" and after in ("'", "\u2019"):
            h += 1
            after = text[toks[h - 1][2]:toks[h][1]] if h < n else ""
        elif after.rstrip() in ("'", "\u2019"):
            after = after[1:]
        # a grade or type between name and head: "Billroth II gastrectomy", "Le Fort III fracture"
        if h + 1 < n and after == " " and toks[h][0] in _NUMERALS and text[toks[h][2]:toks[h + 1][1]] == " ":
            h += 1
        head = toks[h][0].lower() if h < n and after.strip() == "" and after else ""
        listed = [fold(toks[k][0]) in epo for k in run]
        # a first name opening a space-joined run is a person ("Mary Crohn"); hyphen-joined names
        # are one eponym ("Reed-Sternberg")
        person = (len(run) > 1 and fold(toks[run[0]][0]) in firsts and not listed[0]
                  and text[toks[run[0]][2]:toks[run[1]][1]] == " ")
        # a space-joined word that is no eponym opens no medical phrase when it is a first name or on
        # no name list at all ("Call Xqzvy Crohn disease" keeps "Xqzvy" withheld); a census surname
        # before a listed eponym stays ("Ramsay Hunt syndrome"); hyphen-joined parts stay together
        while len(run) > 1 and not listed[0] and text[toks[run[0]][2]:toks[run[1]][1]] == " " \
                and (fold(toks[run[0]][0]) in firsts or fold(toks[run[0]][0]) not in names):
            run, listed = run[1:], listed[1:]
        capitalised = all(toks[k][0][:1].isupper() for k in run)
        if head in EPONYM_HEADS or (head and looks_medical(head, med) and capitalised):
            medical = all(listed) or capitalised
        elif head and all(listed):
            medical = head in med and head not in common
        else:
            medical = False
        if not medical and len(run) == 1 and fold(tok) in drugs and _UNITS_AFTER.match(text, toks[i][2]):
            medical = True
        of_head = False
        if not medical and capitalised and i >= 2 and toks[i - 1][0].lower() == "of" \
                and toks[i - 2][0].lower() in OF_HEADS and text[toks[i - 2][2]:toks[i][1]] == " of ":
            medical = of_head = not person  # "circle of Willis", "pouch of Douglas"
        if medical and not of_head:
            prev = toks[i - 1][0].lower() if i > 0 else ""
            gap = text[toks[i - 1][2]:toks[i][1]] if i > 0 else ""
            # a title or a relation just before (punctuation between ends that context: "wife; Crohn disease")
            if (prev in _TITLES and gap in (" ", ". ", ".")) or (prev in _PERSON_CUES and gap.isspace()):
                medical = False
            # a first name that is no eponym opening the run: "Mary Crohn disease" is a person
            elif person:
                medical = False
        if medical and h < n and toks[h][0].lower() in _PERSON_CUES:
            medical = False
        if medical:
            out.extend((toks[k][1], toks[k][2]) for k in run)
            if h > j + 1 and toks[j + 1][0].lower() == "s":
                out.append((toks[j + 1][1], toks[j + 1][2]))
            if head and h < n:  # the head is medical in this phrase too ("Morison pouch")
                out.append((toks[h][1], toks[h][2]))
            if of_head:
                out.append((toks[i - 2][1], toks[i - 2][2]))
        i = j + 1
    return out


def covered_tokens(toks: list[tuple[str, int, int]], spans: list[tuple[int, int]]) -> set[int]:
    """Indices of ``toks`` that lie inside one of ``spans``."""
    if not spans:
        return set()
    return {k for k, (_, a, b) in enumerate(toks) if any(s <= a and b <= e for s, e in spans)}
