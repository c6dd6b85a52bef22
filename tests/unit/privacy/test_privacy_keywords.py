import json

from medforge.privacy.keywords import KeywordConfig, extract_keywords
from medforge.privacy.vocab import norm_phrase, tokenize


def test_tokenize_spans():
    toks = tokenize("Chest pain, 3 days.")
    assert [t for t, _, _ in toks] == ["Chest", "pain", "3", "days"]
    assert toks[1][1:] == (6, 10)
    assert norm_phrase("Chest  PAIN") == "chest pain"


def test_longest_match_and_budget():
    from medforge.privacy.vocab import load_vocabulary

    vocab = load_vocabulary()
    q = "A 50-year-old man has shortness of breath and fevers after taking amoxicillin."
    g = extract_keywords(q, {"A": "x", "B": "y"}, KeywordConfig(), vocab)
    assert "shortness of breath" in g.keywords
    assert "fever" in g.keywords  # plural folded
    assert "amoxicillin" in g.keywords
    assert "50-year-old man" in g.keywords
    assert g.n_words == len(tokenize(q))
    assert g.privacy_budget == round(g.n_sent_words / g.n_words, 4)
    assert "taking" not in g.keywords and "after" not in g.keywords


def test_max_keywords():
    g = extract_keywords("Fever, cough, dyspnea and hemoptysis.", {"A": "x", "B": "y"}, KeywordConfig(max_keywords=2))
    assert len(g.keywords) == 2


def test_config_rejects_unknown_source():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown or no vocabulary"):
        KeywordConfig(sources=["umls"])


def test_keywords_cli(tmp_path):
    from medforge.cli import main

    src = tmp_path / "in.jsonl"
    src.write_bytes(
        json.dumps({"question": "Mr. John Smith (MRN 5551234) has fever and jaundice.", "options": ["Hepatitis A", "Malaria"]}).encode()
        + b"\n" + b"\xff\xfe bad\n"
    )
    out = tmp_path / "out.jsonl"
    assert main(["keywords", "--input", str(src), "--output", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 1 and set(rows[0]) == {"id", "keywords", "options"}
    assert rows[0]["keywords"] == ["fever", "jaundice"]
    assert "smith" not in out.read_text().lower() and "5551234" not in out.read_text()
    budget = [json.loads(x) for x in (tmp_path / "out.budget.jsonl").read_text().splitlines()]
    assert 0 < budget[0]["privacy_budget"] < 1
    q = [json.loads(x) for x in (tmp_path / "out.quarantine.jsonl").read_text().splitlines()]
    assert q[0]["line"] == 1 and "UTF-8" in q[0]["reason"]
