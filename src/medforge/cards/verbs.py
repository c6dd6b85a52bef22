"""Root verb and first noun of an instruction, as Self-Instruct and AlpaCare plot their data (cheap heuristic).

Self-Instruct (Wang et al., 2023, figure 2) and AlpaCare parse each instruction and plot the root
verb with its first direct-object noun. A dependency parser costs ~7 ms per instruction on one
core here (spaCy's ``en_core_web_sm``, plus ~20 s to load) and is not a medforge dependency, so
the card uses a rule instead, and says so: the first word is the verb when it is one of
:data:`IMPERATIVE_VERBS` (questions such as "What are ..." have no root verb in that sense and
are counted apart); the noun is the first later word that is not a function word, a number or
an adjective-looking word ("-al", "-ic", "-ous", "-ive", "-ed" ...), within four words.
"""

from __future__ import annotations

import re
from collections import Counter

IMPERATIVE_VERBS = frozenset("""
explain describe list summarize summarise identify provide classify compare give write suggest recommend determine
discuss outline create generate calculate name define evaluate assess analyze analyse interpret diagnose predict
rewrite translate simplify convert extract rank rate categorize categorise match choose select answer tell state
highlight propose develop design draft prepare plan formulate estimate find detect differentiate distinguish contrast
elaborate clarify review critique offer advise educate counsel compose construct paraphrase correct edit fill
complete sort order arrange organize organise infer justify argue illustrate demonstrate show indicate specify
mention enumerate break walk guide help instruct teach convince reassure respond reply address consider imagine
pretend act conduct perform apply use detail note point characterize characterise examine investigate report recall
verify check confirm measure compute quantify derive label tag group divide combine expand shorten condense
recognize recognise spot flag read calculate convert assign counsel triage screen manage treat prescribe list
annotate transform reformulate generate brainstorm share present draw compile prioritize prioritise weigh
""".split())

_SKIP = frozenset("""
the a an this these those that following given possible common main key potential most some any all each several
few brief short concise detailed simple different various appropriate best top major typical important primary
your my his her their its our of to for in on at by with about me us them it plain clear recent new current
specific general one two three four five six seven eight nine ten more less many much other such and or step
up down out accurate coherent introductory complex correct standard multiple-choice comprehensive thorough
evidence-based easy layman layman's
""".split())
_STOP_AT = frozenset("how what why which whether if when where who whom".split())
_ADJ = re.compile(r".+(?:al|ic|ous|ive|ful|able|ible|ary|ed|ing|less|est)$")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
METHOD = ("heuristic: first word as the verb when it is a known imperative verb; first noun = first later word "
          "that is not a function word, number or adjective-like word (no parser)")


def verb_noun(instruction: str) -> tuple[str | None, str | None]:
    """``(verb, noun)`` of one instruction; ``(None, None)`` when it does not open with an imperative verb."""
    words = [w.lower() for w in _WORD.findall(instruction)]
    if words and words[0] == "please":
        words = words[1:]
    if not words or words[0] not in IMPERATIVE_VERBS:
        return None, None
    for w in words[1:5]:
        w = w.removesuffix("'s")
        if w in _STOP_AT:
            return words[0], None
        if w in _SKIP or _ADJ.fullmatch(w):
            continue
        return words[0], w
    return words[0], None


def verb_noun_counts(instructions: list[str]) -> tuple[Counter[str], dict[str, Counter[str]], int]:
    """Verb counts, nouns per verb, and how many instructions have no imperative root verb."""
    verbs: Counter[str] = Counter()
    nouns: dict[str, Counter[str]] = {}
    other = 0
    for text in instructions:
        verb, noun = verb_noun(text)
        if verb is None:
            other += 1
            continue
        verbs[verb] += 1
        if noun:
            nouns.setdefault(verb, Counter())[noun] += 1
    return verbs, nouns, other
