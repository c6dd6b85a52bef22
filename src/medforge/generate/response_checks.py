"""Response-level quality gates: pure checks on a teacher's reply, beside the task checks.

:mod:`medforge.generate.filters` judges the *tasks* a teacher writes; this module judges the
*replies* (answers to tasks, overall contexts; a judge's verdict gets the truncated rule in
:func:`medforge.evaluate.judge.parse_verdict`, which handles empty and refusing verdicts itself).
Every gate is a pure function
``text -> detail | None`` and has a name, which is the counted rejection reason:

``empty``
    nothing but whitespace or punctuation.
``refusal``
    a refusal or an AI disclaimer instead of an answer ("As an AI language model...",
    "I cannot provide medical advice").
``repetition``
    a degenerate loop, measured with the repetition filters of Gopher's MassiveText quality
    rules (Rae et al., 2021, "Scaling Language Models: Methods, Analysis & Insights from
    Training Gopher", appendix A.1.1 and table A1): the share of duplicate lines (0.30) and
    paragraphs (0.30) and the characters in them (0.20, 0.20); the characters covered by the
    most frequent 2-, 3- and 4-gram (0.20, 0.18, 0.16); and the characters covered by duplicate
    5- to 10-grams (0.15, 0.14, 0.13, 0.12, 0.11, 0.10). The n-gram shares are compared with
    ``ngram_threshold_scale`` times Gopher's value (default 3): at Gopher's own values they
    reject 45 of the 216 text-davinci-003 reference answers of MedInstruct-test and one of
    Claude 2's -- parallel lists ("Type 1 diabetes: symptoms ... Type 2 diabetes: symptoms
    ...") that are not loops (docs/benchmarks.md). Two rules aimed at loops catch what the
    relaxed shares let through: a span of words repeated back to back (three copies, eight words
    or more: "This is a medical advice. This is a medical advice. This is ..."), and a sentence of
    five words or more said three times or more anywhere in the reply.
``echo``
    the reply restates the instruction: ROUGE-L F1 with it at or above ``echo_rouge_l``, less
    than ``echo_max_new_share`` of its words new (not in the instruction or the input), and not
    one new content word (:func:`echo_gate`).
``not_english``
    mostly non-Latin letters, or more function words of Spanish, French, German, Italian or
    Portuguese than of English (a cheap offline check: two small word lists, no model).
``truncated``
    the engine stopped at the token limit (``finish_reason == "length"``, as the engine
    reports it: see :mod:`medforge.engines.chat`), never a guess from the text.

More deviations from Gopher, because Gopher judged web documents of 50 to 100,000 words and
a reply can be one word long: an n-gram counts only when it occurs at least twice (Gopher's
"most frequent n-gram" of a 10-word answer covers a third of it even without any repetition);
the n-gram rules apply only from ``ngram_min_words`` words on (Gopher's own minimum document
length, 50); and list markers ("1.", "-", "a)") are stripped before lines are compared. Words
are ``\\w+`` runs, lower-cased; character shares count the characters of words.

:func:`check_response` runs the gates in a fixed order and returns a :class:`GateResult`.
A truncated reply that passes every other gate is kept only when ``keep_truncated`` is set,
and then marked (``GateResult.truncated``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from medforge.config.base import MedforgeModel
from medforge.rouge import rouge_l_f1, tokenize

GateName = Literal["empty", "refusal", "repetition", "echo", "not_english", "truncated"]
#: the order in which :func:`check_response` applies the gates (truncated last: a loop that ran
#: into the token limit is counted as a loop, and only an otherwise good reply can be kept cut)
GATES: tuple[str, ...] = ("empty", "refusal", "repetition", "echo", "not_english", "truncated")

# Gopher (Rae et al., 2021), table A1.
GOPHER_DUP_LINE_FRAC = 0.30
GOPHER_DUP_PARA_FRAC = 0.30
GOPHER_DUP_LINE_CHAR_FRAC = 0.20
GOPHER_DUP_PARA_CHAR_FRAC = 0.20
GOPHER_TOP_NGRAM_CHAR_FRAC = {2: 0.20, 3: 0.18, 4: 0.16}
GOPHER_DUP_NGRAM_CHAR_FRAC = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}


class ResponseCheckConfig(MedforgeModel):
    """Which reply gates run, and what happens to a reply that fails one (docs/pipeline.md)."""

    enabled: bool = Field(True, description="Run the reply gates; false keeps every parsed reply (as before the gates).")
    gates: list[GateName] = Field(
        default_factory=lambda: list(GATES),
        description="Gates to apply, of: empty, refusal, repetition, echo, not_english, truncated.",
    )
    keep_truncated: bool = Field(
        False, description="Keep a reply cut at the token limit (finish_reason 'length') when it passes every other "
        "gate, marked response_truncated=true in its row; false drops it.",
    )
    retry: bool = Field(
        True, description="Ask once more, with another seed, for a reply that failed a gate, before giving up on it.",
    )
    ngram_min_words: int = Field(
        50, ge=1, description="Apply Gopher's n-gram repetition rules only to replies with at least this many words "
        "(Gopher's minimum document length).",
    )
    ngram_threshold_scale: float = Field(
        3.0, gt=0.0, description="Multiplier on Gopher's n-gram repetition thresholds; 1.0 applies Gopher's own "
        "(they reject structured answers with parallel lists: see docs/benchmarks.md).",
    )
    max_sentence_repeats: int = Field(
        2, ge=1, description="A sentence (5+ words) said more often than this is a loop.",
    )
    echo_rouge_l: float = Field(
        0.7, gt=0.0, le=1.0, description="ROUGE-L F1 with the instruction at or above which a reply may be an echo.",
    )
    echo_max_new_share: float = Field(
        0.3, ge=0.0, le=1.0, description="...and it is one when less than this share of its words is new "
        "(in neither the instruction nor the input).",
    )


@dataclass(frozen=True)
class GateResult:
    """The outcome of :func:`check_response`.

    Attributes:
        gate: the first gate the reply failed (its counted reason), ``None`` when it passed.
        detail: a human-readable measurement, for the quarantine file.
        truncated: the reply was cut at the token limit and kept (``keep_truncated``).
    """

    gate: str | None
    detail: str = ""
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.gate is None


# ----------------------------------------------------------------------------- empty
_LETTER_OR_DIGIT = re.compile(r"[^\W_]")


def empty_gate(text: str) -> str | None:
    """Nothing but whitespace or punctuation."""
    return None if _LETTER_OR_DIGIT.search(text or "") else "no letter or digit in the reply"


# ----------------------------------------------------------------------------- refusal
_CANT = r"(?:cannot|can't|can ?not|am unable to|am not able to|won't|will not|must decline to|am not allowed to)"
# Anywhere in a reply: an AI persona or a refusal outright. A medical teacher speaks as a clinician.
_REFUSALS = re.compile(
    "|".join([
        r"\bas an? (?:ai|artificial intelligence|digital ai)\b",
        r"\bas an? (?:large )?language model\b",
        r"\bi(?:'m| am) (?:just |only )?an? (?:ai|artificial intelligence|language model|chatbot|virtual assistant)\b",
        r"\bi(?:'m| am) not (?:a |an )?(?:doctor|physician|medical professional|healthcare professional|licensed|qualified)\b",
        r"\bi(?:'m| am) (?:sorry|afraid),? (?:but )?i (?:cannot|can't|can ?not|am unable|am not able|won't)\b",
        r"\b(?:my|our) (?:guidelines|policies|programming) (?:do not|don't) allow\b",
    ]),
    re.IGNORECASE,
)
# Only as the opening sentence of a short reply: "I cannot provide medical advice. Please see a doctor."
# A clinician's hedge before or inside a real answer ("I can't diagnose over the internet, but these
# symptoms suggest ...", 100 words on) is kept.
_OPENING_REFUSAL = re.compile(
    rf"\bi {_CANT} (?:provide|give|offer|answer|help|assist|diagnose|comply|fulfil|fulfill|respond|prescribe|"
    r"recommend|generate|complete|do that|share)\b",
    re.IGNORECASE,
)
_FIRST_SENTENCE = re.compile(r"^.*?(?:[.!?](?:\s|$)|\n|$)", re.DOTALL)
# A medical-advice disclaimer is a defect when it is (nearly) the whole reply, not as a closing note.
_DISCLAIMER = re.compile(r"\bnot (?:intended as |meant as |a substitute for |to be taken as )?(?:professional |personal )?"
                         r"medical advice\b", re.IGNORECASE)
_DISCLAIMER_MAX_WORDS = 40
_OPENING_REFUSAL_MAX_WORDS = 60


def refusal_gate(text: str) -> str | None:
    """An AI persona or a refusal anywhere, or a short reply that opens with a refusal or is only a
    medical-advice disclaimer."""
    m = _REFUSALS.search(text)
    if m:
        return f"refusal phrase {m.group(0)!r}"
    first = _FIRST_SENTENCE.match(text.strip())
    m = _OPENING_REFUSAL.search(first.group(0) if first else "")
    if m and len(text.split()) < _OPENING_REFUSAL_MAX_WORDS:
        return f"a short reply that opens with a refusal {m.group(0)!r}"
    if _DISCLAIMER.search(text) and len(text.split()) < _DISCLAIMER_MAX_WORDS:
        return "a short reply that is a medical-advice disclaimer"
    return None


# ----------------------------------------------------------------------------- repetition
_WORDS = re.compile(r"\w+")
_PARAGRAPHS = re.compile(r"\n\s*\n")
_SENTENCES = re.compile(r"(?<=[.!?;])\s+|\n+")
_LIST_MARKER = re.compile(r"^(?:[-*\u2022]+|\(?\d{1,3}[.):]|\(?[a-zA-Z][.)])\s+")
#: back-to-back repeats: up to this many words per copy, at least 3 copies, 8 words in all
TANDEM_MAX_PERIOD, TANDEM_MIN_COPIES, TANDEM_MIN_WORDS = 30, 3, 8
SENTENCE_MIN_WORDS = 5


def _duplicates(parts: list[str]) -> tuple[int, int]:
    """(number of parts seen before, characters in them), as Gopher counts duplicate lines."""
    seen: set[str] = set()
    n = chars = 0
    for p in parts:
        if p in seen:
            n += 1
            chars += len(p)
        else:
            seen.add(p)
    return n, chars


def _top_ngram_chars(words: list[str], n: int) -> int:
    """Characters covered by the most frequent n-gram's occurrences (0 unless it occurs twice)."""
    counts = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    if not counts:
        return 0
    gram, c = counts.most_common(1)[0]
    return c * sum(len(w) for w in gram) if c >= 2 else 0


def _dup_ngram_chars(words: list[str], lengths: list[int], n: int) -> int:
    """Characters in n-grams that repeat an earlier one (non-overlapping, Gopher's duplicate n-gram share)."""
    seen: set[tuple[str, ...]] = set()
    chars, i = 0, 0
    while i <= len(words) - n:
        gram = tuple(words[i:i + n])
        if gram in seen:
            chars += sum(lengths[i:i + n])
            i += n
        else:
            seen.add(gram)
            i += 1
    return chars


def tandem_repeat(words: list[str], max_period: int = TANDEM_MAX_PERIOD, min_copies: int = TANDEM_MIN_COPIES,
                  min_words: int = TANDEM_MIN_WORDS) -> tuple[int, int] | None:
    """``(period, start)`` of the first span of ``period`` words repeated ``min_copies`` times back to
    back (``min_words`` words in all), or ``None``."""
    n = len(words)
    for p in range(1, min(max_period, n // min_copies) + 1):
        need = max((min_copies - 1) * p, min_words - p)
        # "1" where a word equals the word p places on; a run of `need` of them is `min_copies` copies
        same = "".join("1" if a == b else "0" for a, b in zip(words, words[p:]))
        i = same.find("1" * need)
        if i >= 0:
            return p, i
    return None


def repetition_gate(text: str, ngram_min_words: int = 50, max_sentence_repeats: int = 2,
                    ngram_threshold_scale: float = 3.0) -> str | None:
    """Gopher's repetition rules (module docstring), back-to-back repeats and a sentence said too often."""
    stripped = text.strip()
    lines = [_LIST_MARKER.sub("", ln.strip()) for ln in stripped.splitlines() if ln.strip()]
    if len(lines) > 1:
        n, chars = _duplicates(lines)
        if n / len(lines) > GOPHER_DUP_LINE_FRAC:
            return f"duplicate lines {n}/{len(lines)} > {GOPHER_DUP_LINE_FRAC}"
        if chars / len(stripped) > GOPHER_DUP_LINE_CHAR_FRAC:
            return f"characters in duplicate lines {chars / len(stripped):.2f} > {GOPHER_DUP_LINE_CHAR_FRAC}"
    paras = [p.strip() for p in _PARAGRAPHS.split(stripped) if p.strip()]
    if len(paras) > 1:
        n, chars = _duplicates(paras)
        if n / len(paras) > GOPHER_DUP_PARA_FRAC:
            return f"duplicate paragraphs {n}/{len(paras)} > {GOPHER_DUP_PARA_FRAC}"
        if chars / len(stripped) > GOPHER_DUP_PARA_CHAR_FRAC:
            return f"characters in duplicate paragraphs {chars / len(stripped):.2f} > {GOPHER_DUP_PARA_CHAR_FRAC}"
    sentences = Counter(" ".join(_WORDS.findall(s.lower())) for s in _SENTENCES.split(stripped))
    for sentence, count in sentences.items():
        if count > max_sentence_repeats and len(sentence.split()) >= SENTENCE_MIN_WORDS:
            return f"sentence said {count} times: {sentence[:80]!r}"
    words = _WORDS.findall(stripped.lower())
    tandem = tandem_repeat(words)
    if tandem is not None:
        p, i = tandem
        return f"{p} word(s) repeated back to back: {' '.join(words[i:i + p])[:80]!r}"
    if len(words) < ngram_min_words:
        return None
    lengths = [len(w) for w in words]
    total = sum(lengths)
    for n, frac in GOPHER_TOP_NGRAM_CHAR_FRAC.items():
        share, limit = _top_ngram_chars(words, n) / total, frac * ngram_threshold_scale
        if share > limit:
            return f"top {n}-gram covers {share:.2f} of the characters > {limit:.2f}"
    for n, frac in GOPHER_DUP_NGRAM_CHAR_FRAC.items():
        share, limit = _dup_ngram_chars(words, lengths, n) / total, frac * ngram_threshold_scale
        if share > limit:
            return f"duplicate {n}-grams cover {share:.2f} of the characters > {limit:.2f}"
    return None


# ----------------------------------------------------------------------------- echo
def echo_gate(text: str, instruction: str, input_text: str = "", rouge_l: float = 0.7,
              max_new_share: float = 0.3) -> str | None:
    """The reply restates the instruction and adds nothing of its own: ROUGE-L F1 with the instruction at
    or above ``rouge_l``, less than ``max_new_share`` of its words new, and not one new content word.

    "New" means in neither the instruction nor the input; a content word is not an English function
    word, and its first four letters differ from those of every instruction and input word ("listed"
    is not new after "List"). So "The first-line drug for type 2 diabetes is metformin." answers
    "What is the first-line drug for type 2 diabetes?" (one new content word) and passes.
    """
    if not instruction.strip():
        return None
    words = tokenize(text)
    if not words:
        return None
    asked = tokenize(instruction)
    f1 = rouge_l_f1(words, asked)
    if f1 < rouge_l:
        return None
    known = set(asked) | set(tokenize(input_text))
    stems = {w[:4] for w in known}
    new = [w for w in words if w not in known]
    content = [w for w in new if w not in _ENGLISH and w not in _FILLER and w[:4] not in stems]
    share = len(new) / len(words)
    if share < max_new_share and not content:
        return f"ROUGE-L {f1:.2f} with the instruction, {share:.0%} new words, none of them a content word"
    return None


# ----------------------------------------------------------------------------- language
_LETTERS = re.compile(r"[^\W\d_]+")
# Frequent English function words (none of them a word of the languages below).
_ENGLISH = frozenset(
    "the of and to in is are was were be been a an that for with as on by this it or from at which can may not "
    "have has had should will would your you their its these those if when also such but more than other into "
    "about there what how who most some any each both between during after before because while do does often "
    "they them he she we our his her".split())
# Words that add nothing to a restated instruction.
_FILLER = frozenset("please here below following answer response question kindly sure certainly".split())
# Frequent function words of Spanish, French, German, Italian and Portuguese that are not English words.
_FOREIGN = frozenset(
    "el los las del que y por para con una es se su como pero más muy esta está son sus también "
    "le les des et est du pour dans une qui sur pas au aux avec cette sont ou elle ils leur être "
    "der das und ist nicht mit ein eine zu dem von auf für sich auch werden wird oder bei "
    "di che è della delle gli sono nel alla dei anche questo "
    "os da em não com dos das são uma pelo pela".split())


def language_gate(text: str) -> str | None:
    """Mostly non-Latin letters, or more Spanish/French/German/Italian/Portuguese function words than English ones."""
    letters = "".join(_LETTERS.findall(text))
    if len(letters) >= 20:
        latin = sum(c.isascii() or "\u00c0" <= c <= "\u024f" for c in letters) / len(letters)
        if latin < 0.8:
            return f"{1 - latin:.0%} of the letters are not Latin"
    words = [w.lower() for w in _LETTERS.findall(text)]
    if len(words) < 8:
        return None
    en = sum(w in _ENGLISH for w in words)
    foreign = sum(w in _FOREIGN for w in words)
    if foreign >= 3 and foreign > 2 * en:
        return f"{foreign} non-English function words vs {en} English ones"
    return None


# ----------------------------------------------------------------------------- all of them
def check_response(text: str, cfg: ResponseCheckConfig, instruction: str = "", input_text: str = "",
                   finish_reason: str = "") -> GateResult:
    """Run the configured gates on one reply, in :data:`GATES` order.

    Args:
        text: the reply as it would reach the dataset.
        cfg: which gates run, and whether a truncated reply may be kept.
        instruction: the task's instruction (for ``echo``); empty skips that gate.
        input_text: the task's input (words of it are not "new" in an echo).
        finish_reason: the engine's finish reason; ``"length"`` means cut at the token limit.

    Returns:
        The first failed gate with its measurement, or a pass (``truncated`` set when a reply
        cut at the token limit is kept).
    """
    if not cfg.enabled:
        return GateResult(None)
    gates = set(cfg.gates)
    text = text or ""
    checks = (
        ("empty", lambda: empty_gate(text)),
        ("refusal", lambda: refusal_gate(text)),
        ("repetition", lambda: repetition_gate(text, cfg.ngram_min_words, cfg.max_sentence_repeats,
                                                       cfg.ngram_threshold_scale)),
        ("echo", lambda: echo_gate(text, instruction, input_text, cfg.echo_rouge_l, cfg.echo_max_new_share)),
        ("not_english", lambda: language_gate(text)),
    )
    for name, check in checks:
        if name in gates:
            detail = check()
            if detail is not None:
                return GateResult(name, detail)
    if "truncated" in gates and finish_reason == "length":
        if cfg.keep_truncated:
            return GateResult(None, "cut at the token limit; kept (keep_truncated)", truncated=True)
        return GateResult("truncated", "cut at the token limit (finish_reason 'length')")
    return GateResult(None)


__all__ = [
    "GATES", "GateResult", "ResponseCheckConfig", "check_response", "echo_gate", "empty_gate", "language_gate",
    "refusal_gate", "repetition_gate", "tandem_repeat",
]
