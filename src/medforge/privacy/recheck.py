"""The independent pass over answer options: "does this option hold an identifier?", asked again
on a different tokenisation, so that it does not share the scrubber's token-level blind spots.

The scrubber (:func:`medforge.privacy.guard.guard_option`) reads an option as word tokens
(``[^\\W_]+``) glued into compounds. This pass reads it differently:

* the text is first **normalised** (Unicode NFKC: full-width digits, ligatures and compatibility
  letters become plain ones; zero-width and soft-hyphen characters are dropped), and the
  identifier patterns of :func:`medforge.privacy.phi.find_phi` run on that normalised text
  (where normalising changed nothing, the scrubber already ran them on the same text), and so
  does its bare name-list rule, which the scrubber does not apply to options;
* the text is cut into **whitespace chunks**. A run of chunks made only of digits and separators
  that holds seven digits or more ("555 867 53 09", "(0) 20 7946 0958") is an identifier even
  where no phone pattern fits it; one chunk that mixes letters with four digits or more, or with
  three digits in three parts ("PMX99812Q", "1EG4-TE5-MK73") is an id ("HbA1c", "CA-125",
  "COVID-19", "HLA-B27" are not: too few digits);
* each chunk's letters are looked up whole ("Núñez", "O'Brien" -> "obrien", "Villalobos,") in the
  person-name lists, not token by token: a name that is not a common word, not a medical word and
  not an eponym in a medical phrase (:mod:`medforge.privacy.eponyms`) is flagged in any case.

Its spans are added to the scrubber's own, so an option is sent unchanged only when *both*
passes find nothing, and where one finds an identifier only that span is replaced. It shares the
word lists with the scrubber, so it is not a second opinion about what a name is: it only closes
the gaps that tokenisation and Unicode open.
"""

from __future__ import annotations

import re
import unicodedata

from medforge.privacy.eponyms import fold
from medforge.privacy.lexicon import common_words, medical_words, person_names
from medforge.privacy.phi import PhiSpan, find_phi, name_list_spans
from medforge.privacy.vocab import Vocabulary, name_denylist

_INVISIBLE = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"}
_CHUNK = re.compile(r"\S+")
_SEPARATORS = set(" -.()/+")
_UNIT_AFTER = re.compile(r"\s*(?:mg|g|kg|mcg|ml|l|dl|units?|iu|mmol|mmhg|%|/)", re.I)


def normalise(text: str) -> tuple[str, list[int]]:
    """NFKC text without invisible characters, and for each of its characters the index of the
    original character it came from."""
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        if ch in _INVISIBLE:
            continue
        norm = unicodedata.normalize("NFKC", ch)
        out.append(norm)
        index.extend([i] * len(norm))
    index.append(len(text))
    return "".join(out), index


def _digit_runs(text: str) -> list[tuple[int, int]]:
    """Runs of digit-and-separator chunks with seven digits or more (not followed by a unit)."""
    spans = []
    chunks = [(m.start(), m.end()) for m in _CHUNK.finditer(text)]
    run: list[tuple[int, int]] = []

    def close() -> None:
        if run:
            a, b = run[0][0], run[-1][1]
            if sum(c.isdigit() for c in text[a:b]) >= 7 and not _UNIT_AFTER.match(text, b):
                spans.append((a, b))

    for a, b in chunks:
        chunk = text[a:b].strip(",;:")
        if chunk and any(c.isdigit() for c in chunk) and all(c.isdigit() or c in _SEPARATORS for c in chunk):
            if run and text[run[-1][1]:a].strip():
                close()
                run = []
            run.append((a, b))
        else:
            close()
            run = []
    close()
    return spans


def second_pass(text: str, vocab: Vocabulary, medical_spans: list[tuple[int, int]] = ()) -> list[PhiSpan]:
    """Identifier spans (in ``text``'s own offsets) found on the normalised, whitespace-chunked text.

    Args:
        text: one answer option.
        vocab: the medical vocabulary (its words are not names).
        medical_spans: character spans of eponyms in a medical phrase, which are not names.
    """
    norm, index = normalise(text)
    spans: list[PhiSpan] = []

    def inside_medical(a: int, b: int) -> bool:
        return any(s <= a and b <= e for s, e in medical_spans)

    # where normalising changed nothing, the scrubber's own pattern scan already saw this exact text:
    # only the bare name-list rule, which the scrubber does not apply to options, is new
    found = find_phi(norm, names=True) if norm != text else name_list_spans(norm)
    for s in found:
        a, b = index[s.start], index[s.end - 1] + 1
        if s.kind == "name" and inside_medical(a, b):
            continue
        spans.append(PhiSpan(s.kind, a, b))
    for a, b in _digit_runs(norm):
        spans.append(PhiSpan("unique_id", index[a], index[b - 1] + 1))
    names, deny, common, med = person_names(), name_denylist(), common_words(), medical_words(vocab)
    for m in _CHUNK.finditer(norm):
        chunk = m.group(0)
        a, b = index[m.start()], index[m.end() - 1] + 1
        digits = sum(c.isdigit() for c in chunk)
        letters = sum(c.isalpha() for c in chunk)
        parts = [p for p in re.split(r"[-./_:]", chunk) if p]
        if letters and (digits >= 4 or (digits >= 3 and len(parts) >= 3)) and not _UNIT_AFTER.match(norm, m.end()):
            spans.append(PhiSpan("unique_id", a, b))
            continue
        word = fold("".join(c for c in chunk if c.isalpha()))
        if len(word) < 3 or not chunk.strip(".,;:!?()[]\"'").replace("'", "").replace("\u2019", "").isalpha():
            continue
        if (word in names or word in deny) and word not in common and word not in med and not inside_medical(a, b):
            spans.append(PhiSpan("name", a, b))
    return spans
