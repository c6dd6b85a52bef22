"""Word lists the guard and the keyword extractor share (no guard logic here: a lower layer).

Every list is loaded lazily from ``data/`` and cached: common English, US-census person names,
medical abbreviations, the medical words of the vocabulary, and the offline-built eponym and
medical-word lists of ``scripts/build_eponyms.py``.
"""

from __future__ import annotations

import gzip
import re
from functools import lru_cache
from importlib import resources

from medforge.privacy.vocab import Vocabulary, _data_lines, name_denylist, stopwords

_MED_SUFFIX = re.compile(
    r"(?:plasty|plication|ectomy|otomy|ostomy|stomy|scopy|scope|graphy|gram|itis|osis|iasis|emia|aemia|uria|pathy|algia|"
    r"plegia|paresis|trophy|plasia|megaly|rrhea|rrhoea|rrhage|penia|cytosis|cele|lysis|centesis|desis|pexy|"
    r"rrhaphy|tripsy|ase|cillin|mycin|micin|cycline|floxacin|azole|vir|mab|nib|pril|sartan|olol|alol|statin|dipine|"
    r"parin|xaban|gatran|tidine|prazole|semide|thiazide|olone|afil|triptan|tropin|lukast|gliptin|glitazone|"
    r"gliflozin|caine|barbital|azepam|zolam|oxetine|pramine|triptyline|peridol|apine|idone|terol|tropium|dronate|"
    r"plasm|blast|cyte|cytes|oma|omas|ectasis|sclerosis|stenosis|genesis|kinesia|phagia|phasia|pnea|ptysis|"
    r"esthesia|tomy|version|ization|ectasia|thermia|glycemia|kalemia|natremia|calcemia|lipidemia|philia)s?$")
_MED_PREFIX = re.compile(
    r"^(?:hemi|cardio|neuro|gastro|hepato|nephro|osteo|arthro|angio|broncho|cholecyst|colono|endo|hyper|hypo|"
    r"dys|tachy|brady|peri|intra|trans|electro|echo|pneumo|thoraco|laparo|hystero|myo|hemo|haemo|leuko|erythro|"
    r"thrombo|immuno|radio|chemo|pharmaco|pyelo|cysto|uretero|rhino|oto|ophthalmo|derm|vaso|sphygmo|spiro|"
    r"endoscop|anti)[a-z]{5,}$")
_PREFIX_ONLY = re.compile(
    r"^(?:hemi|cardio|neuro|gastro|hepato|nephro|osteo|arthro|angio|broncho|cholecyst|colono|endo|hyper|hypo|"
    r"dys|tachy|brady|peri|intra|trans|electro|echo|pneumo|thoraco|laparo|hystero|myo|hemo|haemo|leuko|erythro|"
    r"thrombo|immuno|radio|chemo|pharmaco|pyelo|cysto|uretero|rhino|oto|ophthalmo|derm|vaso|sphygmo|spiro|"
    r"endoscop|anti)")
_GENUS = re.compile(r"(?:ella|coccus|cocci|bacter|bacterium|monas|myces|phila|philus|plasma|virus|viridae|"
                    r"bacillus|spora|sporum|nella|siella|etella)$")
_AFFIX = re.compile(r"^(?:non|anti|per|sub|supra|infra|inter|intra|extra|trans|post|pre|para|retro|peri|multi|"
                    r"poly|micro|macro|pseudo|hemi|semi|bi|uni|endo|epi|hyper|hypo)(?=[a-z]{4,}$)")


@lru_cache(maxsize=None)
def common_words() -> frozenset[str]:
    """Lower-case common English words that may be sent inside an option (no rare names)."""
    # function words ("has", "was") are in no dictionary's base forms, but are as common as it gets
    return frozenset(_data_lines("common_english.txt")) | stopwords()


@lru_cache(maxsize=None)
def person_names() -> frozenset[str]:
    """US-census first names and surnames, lower case."""
    path = resources.files("medforge.privacy") / "data" / "person_names.txt.gz"
    with gzip.open(path.open("rb"), "rt", encoding="utf-8") as f:
        return frozenset(line.strip() for line in f if line.strip())


@lru_cache(maxsize=None)
def first_names() -> frozenset[str]:
    """The census first names (the guard's ``person_names`` minus surnames-only entries)."""
    path = resources.files("medforge.privacy") / "data" / "first_names.txt"
    return frozenset(_data_lines("first_names.txt")) if path.is_file() else frozenset()


@lru_cache(maxsize=None)
def medical_abbreviations() -> tuple[frozenset[str], frozenset[str]]:
    """(abbreviations allowed in any case, abbreviations allowed only in capitals: they are names too)."""
    words = {w.lower() for w in _data_lines("medical_abbreviations.txt")}
    names = person_names() | name_denylist()
    return frozenset(words - names), frozenset(words & names)


_MEDICAL_WORDS: dict[int, frozenset[str]] = {}


def medical_words(vocab: Vocabulary) -> frozenset[str]:
    """Tokens of the vocabulary's phrases that are not person names (eponyms' names stay out)."""
    key = id(vocab.phrases)
    if key not in _MEDICAL_WORDS:
        names, deny, common, stop = person_names(), name_denylist(), common_words(), stopwords()
        toks = {t for p in vocab.phrases if " " in p for t in p.split(" ")}
        words = {t for t in toks if len(t) >= 3 and t not in deny and t not in stop and not t.isdigit()
                 and (t not in names or t in common)}
        # one-word terms ("rash") already passed the vocabulary's own name filter
        words.update(p for p in vocab.phrases if " " not in p and (p not in names or p in common or p not in first_names()))
        words.update(extra_medical_words())
        _MEDICAL_WORDS[key] = frozenset(words)
    return _MEDICAL_WORDS[key]




def _optional_lines(name: str) -> frozenset[str]:
    path = resources.files("medforge.privacy") / "data" / name
    return frozenset(w.lower() for w in _data_lines(name)) if path.is_file() else frozenset()


@lru_cache(maxsize=None)
def eponym_words() -> frozenset[str]:
    """Name words of medical terms ("crohn", "sheehan", "sequard"), accent-folded; built offline by
    ``scripts/build_eponyms.py`` from ICD-10-CM, HPO and its disease annotations."""
    return _optional_lines("eponyms.txt")


@lru_cache(maxsize=None)
def drug_name_collisions() -> frozenset[str]:
    """Single-word drug names that are also person names ("cipro", "allegra")."""
    return _optional_lines("drug_names_that_are_names.txt")


@lru_cache(maxsize=None)
def extra_medical_words() -> frozenset[str]:
    """Clinical words of HPO's definitions that no vocabulary phrase holds ("serology")."""
    return _optional_lines("medical_words.txt")


_KEYWORD_WORDS: dict[int, frozenset[str]] = {}


def keyword_words(vocab: Vocabulary) -> frozenset[str]:
    """Single words that may be sent as a keyword although no vocabulary phrase is made of them
    alone: medical words of the vocabulary that are no common English word, and the clinical
    words of HPO's definitions. Person names are never among them."""
    key = id(vocab.phrases)
    if key not in _KEYWORD_WORDS:
        names, deny = person_names(), name_denylist()
        words = (medical_words(vocab) - common_words()) | extra_medical_words()
        _KEYWORD_WORDS[key] = frozenset(w for w in words if w.isalpha() and len(w) >= 4 and w not in names and w not in deny)
    return _KEYWORD_WORDS[key]


def looks_medical(tok: str, med: frozenset[str]) -> bool:
    """Built like a medical term: a medical suffix or prefix, a microbe's genus ending, or an
    affix ("non", "anti", "per", ...) on a medical or common word ("noninvasive", "percutaneous")."""
    if len(tok) < 6 or not tok.isascii() or not tok.isalpha():
        return False
    if _MED_SUFFIX.search(tok) or (len(tok) >= 9 and _GENUS.search(tok)):
        return True
    if _MED_PREFIX.match(tok):
        # the rest must be a word too ("hyperthyroid", "transesophageal"): "oto" + five letters is
        # how a made-up name can look as well ("Otobbaaa", found by the fuzzer)
        rest = _PREFIX_ONLY.sub("", tok, count=1)
        rests = {rest, rest[1:] if rest[:1] in "aeio" else rest}
        rests |= {r[:-2] for r in rests if r.endswith("ly")}  # "intramuscularly"
        return any(r in med or r in common_words() for r in rests)
    m = _AFFIX.match(tok)
    return m is not None and (tok[m.end():] in med or tok[m.end():] in common_words())
