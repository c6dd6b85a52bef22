"""One rule for everything that leaves the site: the allowlist-first guard for answer options,
and the row-wide PHI terms that are redacted everywhere in a row.

The question never leaves the site (only keywords drawn from the medical vocabulary do, see
:mod:`medforge.privacy.keywords`). Options do, so they pass the same kind of wall, token by
token. A word token of an option is sent only when it is

* part of a medical-vocabulary phrase (greedy longest match, as for keywords), or a *medical
  word*: a token of some vocabulary phrase that is no person name ("carotid", "sulfate"), or a
  word built like a medical term ("hemiarthroplasty", "pericardiocentesis", "-mab", "-pril");
* a common English word (``data/common_english.txt``: frequent dictionary words, rare names
  removed; see ``scripts/build_privacy_wordlists.py``);
* a medical abbreviation (``data/medical_abbreviations.txt``; those that are also names, such
  as "ANA" or "ED", only in capitals), a short lab-style code ("B12", "CD4"), a Roman numeral,
  a single letter or an ordinal; or
* a number with a clinical unit ("500 mg", "0.9%", "120/80 mmHg"), or a small number
  (at most two digits: "type 2", "COVID-19").

Everything else is replaced by ``[REDACTED]``, and so is any token inside an identifier span
(:func:`medforge.privacy.phi.find_phi`) or equal to a PHI term found anywhere in the row.
Tokens joined without a space ("PMX-99812-Q", "192.168.10.45", "site.org/u/7") form one
compound: if one part of it is withheld, the whole compound is, so an identifier is never
sent half. Adjacent withheld tokens collapse into one ``[REDACTED]``.

Names are caught however they are written: by title ("Dr. Smith", "dr smith"), by context
(patterns of :mod:`~medforge.privacy.phi`), capitalised inside a sentence when they are on
the US-census name lists, as lower-case first name + surname pairs ("ana beltran"), and by
the allowlist itself (a rare name is no common English word).

**Medical context decides** (:mod:`medforge.privacy.eponyms`): a capitalised word in a medical
phrase ("Crohn disease", "Bell's palsy", "Whipple procedure") is medical, not a name, unless a
person's context says otherwise ("Dr. Bell", "his wife Mary Crohn"); such words are allowlisted
and no name rule fires on them. **A second, independent pass** (:mod:`medforge.privacy.recheck`:
NFKC-normalised text, whitespace chunks) adds what the token-level scrubber's tokenisation can
miss; an option is sent unchanged only when both find nothing, and otherwise only the flagged
spans change.

**Row-wide terms.** Every identifier found anywhere in the row (question or options) yields
*terms*: the span text, the span with its cue words stripped ("husband Robert Kelly" ->
"Robert Kelly"), each run of capitalised words in it, and each of its tokens that is a name or
holds digits. Each term is redacted wherever it appears in the row's options, and a keyword
holding one is not sent -- even when it is a medical word elsewhere ("Graves disease" is not
sent in a row about Mrs. Graves). Counts, never values, are kept by identifier type.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from medforge.privacy.eponyms import covered_tokens, eponym_spans
from medforge.privacy.lexicon import (common_words, eponym_words, first_names, looks_medical, medical_abbreviations,
                                      medical_words, person_names)
from medforge.privacy.phi import REDACTED, PhiSpan, find_phi
from medforge.privacy.recheck import second_pass
from medforge.privacy.vocab import Vocabulary, match_phrases, name_denylist

#: word tokens of options: Unicode letters and digits (a name in any script is a token)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# characters that join two tokens into one compound when nothing else stands between them
_JOINERS = set("-./:_@+'’#&=?~%\\")
_TITLES = {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "doctor", "nurse", "sr", "sra", "mister"}
_ROMAN = {"i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x", "xi", "xii"}
_UNITS = {
    "mg", "g", "kg", "mcg", "ug", "µg", "ng", "pg", "ml", "l", "dl", "ul", "µl", "mmol", "umol", "µmol", "nmol",
    "pmol", "mol", "meq", "iu", "u", "units", "unit", "mmhg", "cmh2o", "bpm", "cm", "mm", "m", "µm", "um", "nm",
    "hours", "hour", "hrs", "hr", "h", "days", "day", "d", "weeks", "week", "wk", "wks", "months", "month", "mo",
    "years", "year", "yr", "yrs", "y", "min", "mins", "minutes", "minute", "sec", "s", "seconds", "times", "x",
    "percent", "c", "f", "degrees", "breaths", "beats", "drops", "puffs", "tablets", "tablet", "doses", "dose",
    "mosm", "fl", "meq/l", "gy", "cgy", "msv", "kcal", "cal", "mg/kg", "mg/dl", "g/dl", "mmol/l", "mcg/kg",
    "mg/m2", "ml/kg", "ml/h", "l/min", "iu/l", "u/l", "mm3", "µl", "hpf", "lpf", "mets", "weeks'", "fold",
}
_UNIT_SUFFIX = re.compile(r"^\d+(?:mg|g|kg|mcg|ml|l|dl|iu|u|mmhg|cm|mm|h|hr|hrs|d|wk|wks|mo|y|yr|yrs|min|x)$")
_ORDINAL = re.compile(r"^\d{1,2}(?:st|nd|rd|th)$")
_SHORT_CODE = re.compile(r"^[a-z]{1,3}\d{1,2}[a-z]?$")  # b12, cd4, t3, q10, hba1c is in the list
#: cue words that introduce an identifier but are not one ("husband", "County", "MRN", ...)
_CUES = {
    *_TITLES, "named", "name", "is", "called", "patient", "pt", "husband", "wife", "son", "daughter", "mother",
    "father", "spouse", "contact", "by", "lives", "living", "resides", "residing", "resident", "born", "grew", "up",
    "moved", "relocated", "travelled", "traveled", "works", "from", "in", "at", "to", "near", "of", "the", "county",
    "city", "township", "village", "borough", "parish", "heights", "springs", "street", "st", "avenue", "ave", "road",
    "rd", "boulevard", "blvd", "lane", "ln", "drive", "court", "ct", "way", "place", "pl", "terrace", "circle",
    "highway", "hwy", "parkway", "pkwy", "square", "sq", "trail", "number", "no", "num", "id", "mrn", "medical",
    "record", "chart", "health", "plan", "member", "beneficiary", "subscriber", "insurance", "policy", "medicare",
    "medicaid", "group", "account", "acct", "billing", "invoice", "credit", "card", "certificate", "cert", "birth",
    "death", "license", "licence", "driver", "drivers", "dea", "npi", "passport", "vin", "vehicle", "identification",
    "plate", "registration", "serial", "s", "n", "device", "udi", "imei", "mac", "address", "pacemaker", "implant",
    "phone", "tel", "telephone", "fax", "cell", "mobile", "pager", "ssn", "social", "security", "zip", "code",
    "postal", "postcode", "on", "admitted", "discharged", "died", "dob", "date", "aged", "age", "apartment", "apt",
    "suite", "unit", "p", "o", "box", "po", "and", "or", "a", "an",
}


# ----------------------------------------------------------------------------- row-wide terms
@dataclass
class RowTerms:
    """PHI terms of one row, as lower-case token sequences (-> identifier kind).

    Matching is by word tokens, so "Robert  Kelly", "robert-kelly" and "ROBERT KELLY" all hold
    the term "robert kelly"; no per-row regular expression is compiled (that cost more than the
    rest of the guard).
    """

    terms: dict[tuple[str, ...], str] = field(default_factory=dict)
    _first: dict[str, list[int]] = field(default_factory=dict)
    #: option text -> (its identifier spans, its vocabulary cover), filled by :func:`row_terms`
    spans: dict[str, tuple[list[PhiSpan], set[int]]] = field(default_factory=dict)

    def add(self, text: str, kind: str) -> None:
        toks = tuple(t.lower() for t in _WORD.findall(text))
        if not toks or toks in self.terms or (len(toks) == 1 and (toks[0] in _CUES or len(toks[0]) < 2)):
            return
        self.terms[toks] = kind
        lengths = self._first.setdefault(toks[0], [])
        if len(toks) not in lengths:
            lengths.append(len(toks))
            lengths.sort(reverse=True)

    def find_tokens(self, low: list[str]) -> list[tuple[int, int, str]]:
        """``(first, last_exclusive, kind)`` of every term occurrence in a lower-case token list."""
        out = []
        for i, t in enumerate(low):
            for n in self._first.get(t, ()):
                key = tuple(low[i:i + n])
                if len(key) == n and key in self.terms:
                    out.append((i, i + n, self.terms[key]))
                    break
        return out

    def find(self, text: str) -> list[PhiSpan]:
        if not self.terms:
            return []
        toks = [(m.group(0).lower(), m.start(), m.end()) for m in _WORD.finditer(text)]
        return [PhiSpan(kind, toks[a][1], toks[b - 1][2]) for a, b, kind in self.find_tokens([t for t, _, _ in toks])]


def _identifying(tok: str, med: frozenset[str], kind: str) -> bool:
    """Whether a token of an identifier span is itself identifying (then it is a row term)."""
    low = tok.lower()
    if any(c.isdigit() for c in tok):
        return len(tok) >= 3
    if kind in ("name", "geo", "address") and (low in person_names() or low in name_denylist()):
        return True
    return low not in common_words() and low not in med


def _terms_from_span(terms: RowTerms, text: str, span: PhiSpan, med: frozenset[str]) -> None:
    seg = text[span.start:span.end]
    terms.add(seg, span.kind)
    toks = [(m.group(0), m.start(), m.end()) for m in _WORD.finditer(seg)]
    a, b = 0, len(toks)
    while a < b and toks[a][0].lower() in _CUES:
        a += 1
    while b > a and toks[b - 1][0].lower() in _CUES:
        b -= 1
    if a >= b:
        return
    terms.add(seg[toks[a][1]:toks[b - 1][2]], span.kind)
    run: list[tuple[str, int, int]] = []
    for tok in [*toks[a:b], ("", 0, 0)]:
        if tok[0][:1].isupper():
            run.append(tok)
            continue
        if len(run) > 1:
            terms.add(seg[run[0][1]:run[-1][2]], span.kind)
        run = []
    for tok, _, _ in toks[a:b]:
        if _identifying(tok, med, span.kind):
            terms.add(tok, span.kind)


def name_spans(text: str, vocab_covered: set[int] | None = None) -> list[PhiSpan]:
    """Names the context patterns miss: titles in any case, census names capitalised inside a
    sentence, lower-case first name + surname pairs."""
    names, deny, common = person_names(), name_denylist(), common_words()
    toks = [(m.group(0), m.start(), m.end()) for m in _WORD.finditer(text)]
    spans: list[PhiSpan] = []
    sentence_like = any(t[0].islower() for t, _, _ in toks if t[0].isalpha())
    for i, (tok, a, b) in enumerate(toks):
        low = tok.lower()
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        covered = vocab_covered is not None and i in vocab_covered
        if low in _TITLES and nxt is not None and nxt[0][:1].isalpha() and nxt[0].lower() not in common:
            end = nxt[2]
            if (i + 2 < len(toks) and toks[i + 2][0].lower() in names and toks[i + 2][0].lower() not in common
                    and text[nxt[2]:toks[i + 2][1]].isspace()):  # "Dr. Aaberg, Aase disease": the comma ends it
                end = toks[i + 2][2]
            spans.append(PhiSpan("name", nxt[1], end))
        elif low in _TITLES and nxt is not None and nxt[0].lower() in names | deny:
            spans.append(PhiSpan("name", nxt[1], nxt[2]))
        if covered or not tok[:1].isalpha():
            continue
        if (tok[0].isupper() and not tok.isupper() and sentence_like and (low in names or low in deny)
                and not _starts_sentence(text, a)):
            spans.append(PhiSpan("name", a, b))
        elif (tok[0].isupper() and low in first_names() and nxt is not None and nxt[0][:1].isupper()
              and nxt[0].lower() in names and not text[b:nxt[1]].strip()
              and not (vocab_covered is not None and i + 1 in vocab_covered)):
            spans.append(PhiSpan("name", a, nxt[2]))  # "Hope Diaz", "Grant Hill" even at a sentence start
        elif (tok.islower() and nxt is not None and nxt[0].islower() and low in names and nxt[0] in names
              and not text[b:nxt[1]].strip()
              and (low not in common or nxt[0] not in common)
              and not (vocab_covered is not None and i + 1 in vocab_covered)):
            spans.append(PhiSpan("name", a, nxt[2]))
    return spans


def _starts_sentence(text: str, pos: int) -> bool:
    before = text[:pos].rstrip()
    return not before or before[-1] in ".!?:;\n\"'(["


def row_terms(question: str, options: dict[str, str], vocab: Vocabulary) -> tuple[RowTerms, Counter[str], list[PhiSpan]]:
    """The PHI terms of a row, the identifier spans found in it counted by kind, and the question's spans.

    The options' own spans are kept on the returned :class:`RowTerms` (``spans``) so that
    :func:`guard_option` does not search them again.
    """
    terms = RowTerms()
    kinds: Counter[str] = Counter()
    q_spans: list[PhiSpan] = []
    med = medical_words(vocab)
    for k, text in enumerate((question, *options.values())):
        spans, cover = _own_spans(text, vocab, question=k == 0)
        if k == 0:
            q_spans = spans
            _unknown_capitals(terms, text, cover, vocab)
        else:
            terms.spans[text] = (spans, cover)
        kinds.update(s.kind for s in spans)
        for s in spans:
            _terms_from_span(terms, text, s, med)
    return terms, kinds, q_spans


def _unknown_capitals(terms: RowTerms, question: str, cover: set[int], vocab: Vocabulary) -> None:
    """Capitalised words inside the question's sentences that no list knows ("of Millbrook",
    "Okonkwo-Hale") become row terms of kind ``unlisted``: the question never leaves the site, but
    such a word is most likely a name or a place, and an option that repeats it ("Millbrook test")
    would otherwise pass as an eponym in a medical phrase. Not counted as identifiers found."""
    med, common = medical_words(vocab), common_words()
    any_case, caps_only = medical_abbreviations()
    epo = eponym_words()
    for i, m in enumerate(_WORD.finditer(question)):
        tok, low = m.group(0), m.group(0).lower()
        if (i in cover or not tok[:1].isupper() or tok.isupper() or not tok.isalpha() or len(tok) < 3
                or _starts_sentence(question, m.start())):
            continue
        if low in common or low in med or low in any_case or low in caps_only or low in epo or looks_medical(low, med):
            continue
        terms.add(tok, "unlisted")


def _own_spans(text: str, vocab: Vocabulary, question: bool = False) -> tuple[list[PhiSpan], set[int]]:
    """The identifier spans of one text and the indices of its word tokens that are medical
    (vocabulary phrases and eponyms in a medical phrase).

    The question keeps the bare name-list rule of :func:`find_phi` (it only costs keywords there);
    an option gets the independent second pass (:func:`medforge.privacy.recheck.second_pass`).
    A name or place span made only of eponyms in a medical phrase is dropped ("from Meckel
    diverticulum" names no place; "Bell palsy" no person), unless a title opens it ("Dr. Bell").
    """
    toks = [(m.group(0), m.start(), m.end()) for m in _WORD.finditer(text)]
    epo = eponym_spans(text, vocab)
    cover = _vocab_cover([t.lower() for t, _, _ in toks], vocab) | covered_tokens(toks, epo)
    spans = find_phi(text, names=question) + name_spans(text, cover)
    if not question:
        # only what the scrubber's own detectors missed: one identifier is counted once
        medical = epo + [(toks[k][1], toks[k][2]) for k in cover]
        for extra in second_pass(text, vocab, medical):
            if not any(s.start < extra.end and extra.start < s.end for s in spans):
                spans.append(extra)
    if epo:
        spans = [s for s in spans if not _medical_only(text, s, toks, epo)]
    return spans, cover


def _medical_only(text: str, span: PhiSpan, toks: list[tuple[str, int, int]], epo: list[tuple[int, int]]) -> bool:
    if span.kind not in ("name", "geo"):
        return False
    inside = [(t, a, b) for t, a, b in toks if span.start <= a and b <= span.end]
    if any(t.lower() in _TITLES for t, _, _ in inside):
        return False
    caps = [(a, b) for t, a, b in inside if t[:1].isupper() and t.lower() not in _CUES]
    return bool(caps) and all(any(s <= a and b <= e for s, e in epo) for a, b in caps)


# ----------------------------------------------------------------------------- options
def _vocab_cover(low: list[str], vocab: Vocabulary) -> set[int]:
    """Indices of tokens inside a vocabulary phrase match; a one-word match that is a person's name
    ("hunter") does not count, so a name is not spared for being a word of some phrase."""
    cover: set[int] = set()
    names = person_names()
    for _, a, b, _ in match_phrases([(t, 0, 0) for t in low], vocab):
        if b - a > 1 or low[a] not in names:
            cover.update(range(a, b))
    return cover


def _is_number(tok: str) -> bool:
    return tok.isdigit()


def guard_option(text: str, vocab: Vocabulary, terms: RowTerms, counts: Counter[str] | None = None) -> str:
    """``text`` with every token that is not allowlisted, or is PHI, replaced by ``[REDACTED]``.

    Args:
        text: one answer option.
        vocab: the medical vocabulary.
        terms: the row's PHI terms (:func:`row_terms`); redacted wherever they appear.
        counts: if given, incremented by identifier kind for each redacted run
            (``unlisted`` for tokens withheld only because they are not on the allowlist).
    """
    toks = [(m.group(0), m.start(), m.end()) for m in _WORD.finditer(text)]
    if not toks:
        return text
    low = [t.lower() for t, _, _ in toks]
    if text in terms.spans:
        own, cover = terms.spans[text]
    else:
        own, cover = _own_spans(text, vocab)
    phi = own + [PhiSpan(kind, toks[a][1], toks[b - 1][2]) for a, b, kind in terms.find_tokens(low)]
    phi_kind: dict[int, str] = {}
    if phi:
        spans = sorted(phi, key=lambda s: (s.start, -s.end))
        for i, (_, a, b) in enumerate(toks):
            for s in spans:
                if s.start < b and a < s.end:
                    phi_kind[i] = s.kind
                    break
    med, common = medical_words(vocab), common_words()
    any_case, caps_only = medical_abbreviations()

    def unit_follows(i: int) -> bool:
        # "500 mg", "0.9%", "120/80 mmHg", "38.5 °C": the compound's next token or character is a unit
        rest = text[toks[i][2]:].lstrip()
        if rest[:1] in ("%", "°"):
            return True
        return i + 1 < len(toks) and toks[i + 1][1] == len(text) - len(rest) and low[i + 1] in _UNITS

    # compounds: runs of tokens joined only by joiner characters (no space)
    compound = [0] * len(toks)
    for i in range(1, len(toks)):
        gap = text[toks[i - 1][2]:toks[i][1]]
        compound[i] = compound[i - 1] if gap and all(c in _JOINERS for c in gap) else compound[i - 1] + 1
    members: dict[int, list[int]] = {}
    for i, c in enumerate(compound):
        members.setdefault(c, []).append(i)

    reason: dict[int, str] = {}
    for c, idx in members.items():
        numeric = all(low[i].isdigit() for i in idx)
        if numeric:
            last = idx[-1]
            ok = unit_follows(last) and len(idx) <= 3 or (len(idx) == 1 and len(low[idx[0]]) <= 2) or (
                len(idx) == 2 and len(low[idx[0]]) <= 2 and text[toks[idx[0]][2]:toks[idx[1]][1]] in (".", ","))
            for i in idx:
                if i in phi_kind:
                    reason[i] = phi_kind[i]
                elif not ok:
                    reason[i] = "number"
            continue
        for i in idx:
            tok, lt = toks[i][0], low[i]
            if i in phi_kind:
                reason[i] = phi_kind[i]
            elif i in cover or lt in med or lt in common or lt in any_case or lt in _ROMAN or lt in _UNITS:
                continue
            elif lt in caps_only and tok.isupper():
                continue
            elif lt.isdigit():
                prev_alpha = i > idx[0] and low[i - 1].isalpha()
                if not (len(lt) <= 2 or unit_follows(i)) or (not prev_alpha and len(lt) > 2):
                    reason[i] = "number"
            elif len(lt) == 1 or _ORDINAL.match(lt) or _UNIT_SUFFIX.match(lt) or _SHORT_CODE.match(lt):
                continue
            elif len(lt) <= 3 and i > idx[0] and low[idx[0]] == "anti":  # antibodies: "Anti-Ro/SSA", "Anti-Jo-1"
                continue
            elif looks_medical(lt, med) and (lt not in person_names() or lt in med):
                continue
            else:
                reason[i] = "unlisted"
        if any(i in reason for i in idx):
            first = next(reason[i] for i in idx if i in reason)
            for i in idx:
                reason.setdefault(i, first)
    if not reason:
        return text
    out, last, i = [], 0, 0
    n = len(toks)
    while i < n:
        if i not in reason:
            i += 1
            continue
        j = i
        while j + 1 < n and j + 1 in reason and all(
                ch in _JOINERS or ch.isspace() for ch in text[toks[j][2]:toks[j + 1][1]]):
            j += 1
        out.append(text[last:toks[i][1]])
        out.append(REDACTED)
        if counts is not None:
            counts[reason[i]] += 1
        last = toks[j][2]
        i = j + 1
    out.append(text[last:])
    return "".join(out)


def keyword_blocked(keyword: str, terms: RowTerms) -> bool:
    """Whether a keyword holds one of the row's PHI terms (then it is not sent)."""
    return bool(terms.terms) and bool(terms.find_tokens(keyword.split(" ")))
