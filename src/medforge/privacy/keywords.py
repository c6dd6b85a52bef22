"""Local keyword extraction and the privacy guard. Runs with no network.

What crosses the trust boundary for one question is :class:`GuardedQuery`: its ``keywords``
and its ``options`` -- nothing else (no id, no question text). It is built in two walls:

1. **Allowlist** (main wall): the question is tokenised and greedily matched, longest phrase
   first, against the medical vocabulary (:mod:`medforge.privacy.vocab`). Only matched
   phrases become candidate keywords, lower-cased; so do single medical words that no phrase
   holds ("hyperpigmentation": a vocabulary word that is no common English word and no name),
   and keywords whose words touch in the question are joined ("hip" + "fracture" ->
   "hip fracture"). Numbers, names and places are not
   vocabulary, so they never become keywords. One pattern is added on purpose: an age with
   a sex ("45-year-old woman"), kept only when the age is 89 or less (Safe Harbor).
2. **Denylist** (second wall): :func:`medforge.privacy.phi.find_phi` marks suspected
   identifiers in the question; a candidate overlapping one is dropped. A keyword that still
   holds a digit, is on the name list, or holds a PHI term found anywhere in the row is dropped.
3. **Options** pass the same allowlist-first rule, token by token
   (:func:`medforge.privacy.guard.guard_option`): medical vocabulary, common English, numbers
   with a clinical unit are sent; anything else, and every PHI term of the row, is
   ``[REDACTED]``. What was redacted is counted by identifier type (never the values).

The **privacy budget** of a row is the share of the question's word tokens that the sent
keywords cover (Zhang et al. report ~42% on their data): 0 sends nothing, 1 sends every word.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, field_validator

from medforge.config.base import MedforgeModel
from medforge.privacy.guard import guard_option, keyword_blocked, row_terms
from medforge.privacy.lexicon import keyword_words, person_names
from medforge.privacy.phi import merge_spans, overlaps
from medforge.privacy.vocab import SOURCES, Vocabulary, load_vocabulary, match_phrases, name_denylist, singular, tokenize

logger = logging.getLogger(__name__)

_AGE_SEX = re.compile(
    r"\b(\d{1,3})[\s-]*(?:year|yr)s?[\s-]*old\s+(man|woman|male|female|boy|girl|infant|child|patient|gentleman|lady)\b",
    re.IGNORECASE,
)


class KeywordConfig(MedforgeModel):
    """How keywords are extracted and guarded."""

    sources: list[str] = Field(
        default_factory=lambda: list(SOURCES),
        description=f"Vocabularies that form the allowlist; any of {list(SOURCES)}.",
    )
    max_keywords: int | None = Field(
        None, ge=1, description="Keep at most this many keywords per question (first occurrences); null keeps all."
    )
    age_sex: bool = Field(True, description="Send 'N-year-old woman'-style demographics when N <= 89.")
    redact_options: bool = Field(True, description=(
        "Guard the options with the allowlist (medical vocabulary, common English, numbers with a unit) and the "
        "row's PHI terms; anything else becomes [REDACTED]. false sends options verbatim: never for real data."))
    cache_dir: str | None = Field(None, description="Vocabulary cache folder; default ~/.cache/medforge/vocab.")

    @field_validator("sources")
    @classmethod
    def _sources(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if s not in SOURCES]
        if bad or not v:
            raise ValueError(f"unknown or no vocabulary sources {bad}; use some of {list(SOURCES)}")
        return v


@dataclass
class GuardedQuery:
    """The result of extraction + guard for one question.

    ``keywords`` and ``options`` are what is sent; the rest is local bookkeeping.
    """

    keywords: list[str]
    options: dict[str, str]
    privacy_budget: float
    n_words: int
    n_sent_words: int
    phi_kinds: dict[str, int] = field(default_factory=dict)
    dropped_keywords: int = 0
    redacted_options: int = 0
    #: what was withheld, counted by identifier type (never the values): identifier spans found in
    #: the row (question and options), plus ``unlisted`` / ``number`` runs the option allowlist withheld
    redactions: dict[str, int] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """Exactly what crosses the trust boundary."""
        return {"keywords": list(self.keywords), "options": dict(self.options)}


def _join_adjacent(found: list[tuple[int, str, range]], tokens: list[tuple[str, int, int]], question: str,
                   ages: set[int]) -> list[tuple[int, str, range]]:
    """Join keywords whose tokens touch (only spaces or a hyphen between them) into one phrase:
    "hip" + "fracture" -> "hip fracture". Nothing new is sent -- both were keywords -- but the
    phrase keeps the meaning its words lose apart. An age keyword is never joined."""
    out: list[tuple[int, str, range]] = []
    for first, kw, span in found:
        if out and first not in ages and out[-1][0] not in ages and out[-1][2].stop == span.start \
                and len(out[-1][2]) + len(span) <= 6 \
                and question[tokens[span.start - 1][2]:tokens[span.start][1]] in (" ", "-"):
            p_first, p_kw, p_span = out[-1]
            out[-1] = (p_first, f"{p_kw} {kw}", range(p_span.start, span.stop))
        else:
            out.append((first, kw, span))
    return out


def extract_keywords(question: str, options: dict[str, str], cfg: KeywordConfig | None = None,
                     vocab: Vocabulary | None = None) -> GuardedQuery:
    """Extract and guard one question (pure apart from the cached vocabulary).

    Args:
        question: the question text (never sent).
        options: letter -> option text.
        cfg: extraction settings; defaults when None.
        vocab: a loaded vocabulary; loaded from ``cfg`` when None.

    Returns:
        The :class:`GuardedQuery`; its :meth:`~GuardedQuery.payload` is what may be sent.
    """
    cfg = cfg or KeywordConfig()
    vocab = vocab or load_vocabulary(tuple(cfg.sources), cfg.cache_dir)
    tokens = tokenize(question)
    terms, row_kinds, phi = row_terms(question, options, vocab)
    phi_spans = merge_spans(phi)
    deny = name_denylist()
    kinds: dict[str, int] = {}
    for s in phi:
        kinds[s.kind] = kinds.get(s.kind, 0) + 1

    # (token start index, keyword, covered token indices)
    found: list[tuple[int, str, range]] = []
    dropped = 0
    used = [False] * len(tokens)
    if cfg.age_sex:
        for m in _AGE_SEX.finditer(question):
            if int(m.group(1)) > 89 or overlaps(phi_spans, m.start(), m.end()):
                dropped += 1
                continue
            idx = [k for k, (_, a, b) in enumerate(tokens) if a >= m.start() and b <= m.end()]
            if idx:
                found.append((idx[0], f"{int(m.group(1))}-year-old {m.group(2).lower()}", range(idx[0], idx[-1] + 1)))
                for k in idx:
                    used[k] = True
    free = [(k, t) for k, t in enumerate(tokens) if not used[k]]
    # Match within runs of consecutive free tokens so a phrase never spans an age keyword.
    runs: list[list[tuple[int, tuple[str, int, int]]]] = []
    for k, t in free:
        if runs and runs[-1][-1][0] == k - 1:
            runs[-1].append((k, t))
        else:
            runs.append([(k, t)])
    matched: set[int] = set()
    for run in runs:
        for phrase, a, b, _ in match_phrases([t for _, t in run], vocab):
            first, last = run[a][0], run[b - 1][0]
            start, end = tokens[first][1], tokens[last][2]
            matched.update(range(first, last + 1))
            # a small number inside a vocabulary phrase ("type 2 diabetes mellitus") is no identifier
            if (overlaps(phi_spans, start, end) or any(len(t) > 2 and t.isdigit() for t in phrase.split(" "))
                    or phrase in deny or keyword_blocked(phrase, terms)):
                dropped += 1
                continue
            found.append((first, phrase, range(first, last + 1)))
    # single medical words that no phrase holds ("hyperpigmentation", "proprioception"): words of
    # vocabulary phrases or HPO definitions that are no common English word and no person name
    names = person_names()
    for k, (tok, start, end) in enumerate(tokens):
        if used[k] or k in matched or not tok.isalpha():
            continue
        low = tok.lower()
        word = low if low in keyword_words(vocab) else singular(low)
        if word not in keyword_words(vocab) or low in names or low in deny:
            continue
        if overlaps(phi_spans, start, end) or keyword_blocked(word, terms):
            dropped += 1
            continue
        found.append((k, word, range(k, k + 1)))
    found.sort(key=lambda f: f[0])
    found = _join_adjacent(found, tokens, question, ages={f[0] for f in found if "year-old" in f[1]})

    keywords: list[str] = []
    covered: set[int] = set()
    for _, kw, span in found:
        if kw in keywords:
            covered.update(span)
            continue
        if cfg.max_keywords is not None and len(keywords) >= cfg.max_keywords:
            break
        keywords.append(kw)
        covered.update(span)

    sent_options = dict(options)
    n_redacted = 0
    withheld: Counter[str] = Counter()
    if cfg.redact_options:
        for letter, text in options.items():
            new = guard_option(text, vocab, terms, withheld)
            if new != text:
                n_redacted += 1
                sent_options[letter] = new
    redactions = Counter(row_kinds)
    redactions.update({k: v for k, v in withheld.items() if k in ("unlisted", "number")})
    n_words = len(tokens)
    return GuardedQuery(
        keywords=keywords,
        options=sent_options,
        privacy_budget=round(len(covered) / n_words, 4) if n_words else 0.0,
        n_words=n_words,
        n_sent_words=len(covered),
        phi_kinds=kinds,
        dropped_keywords=dropped,
        redacted_options=n_redacted,
        redactions=dict(sorted(redactions.items())),
    )
