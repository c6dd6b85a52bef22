"""ROUGE-L (medforge.rouge) against rouge_score 0.1.2, the reference: the tokenizer, the LCS and the
F-measure, bit for bit. The novelty filter, the reply checks' echo gate, the evaluation's reference
scores and the dataset card all score with these."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medforge.rouge import f_measure, lcs_length, rouge_l_f1, tokenize

rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
rouge_tokenize = pytest.importorskip("rouge_score.tokenize")
_SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)

TEXT = st.text(
    alphabet=st.sampled_from(list("abcAB z09-_.,'\t\n") + ["é", "İ", "ß", "K", "ǅ", "١", "²", "ﬁ", "😀"]),
    max_size=40,
)
TOKS = st.lists(st.sampled_from(["a", "b", "c", "d", "e", "the", "of"]), max_size=25)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_tokenize_matches_rouge_score(text):
    assert tokenize(text) == rouge_tokenize.tokenize(text, None)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_tokenize_matches_rouge_score_any_unicode(text):
    assert tokenize(text) == rouge_tokenize.tokenize(text, None)


@settings(max_examples=400, deadline=None)
@given(TOKS, TOKS)
def test_lcs_and_f_match_rouge_score(a, b):
    expect = rouge_scorer._score_lcs(a, b)
    if a and b:
        lcs = lcs_length(a, b)
        assert lcs == rouge_scorer._lcs_table(a, b)[-1][-1]
        assert f_measure(lcs, len(a), len(b)) == expect.fmeasure
    assert rouge_l_f1(a, b) == expect.fmeasure
    assert rouge_l_f1(b, a) == expect.fmeasure  # symmetric bit for bit


@settings(max_examples=300, deadline=None)
@given(TEXT, TEXT)
def test_text_score_is_rouge_scorers_public_api(a, b):
    assert rouge_l_f1(tokenize(a), tokenize(b)) == _SCORER.score(a, b)["rougeL"].fmeasure


def test_known_values():
    def text_f1(a: str, b: str) -> float:
        return rouge_l_f1(tokenize(a), tokenize(b))

    assert text_f1("a b c d", "A, b; c. D!") == 1.0
    assert text_f1("a b", "c d") == 0.0
    assert text_f1("a b c d", "a x c y") == 0.5
    assert text_f1("", "a b") == 0.0 and f_measure(0, 0, 3) == 0.0
