"""The privacy guard on synthetic vignettes that embed every Safe Harbor identifier type."""

import json
from pathlib import Path

import pytest

from medforge.privacy.keywords import KeywordConfig, extract_keywords
from medforge.privacy.phi import REDACTED, find_phi, redact

VIGNETTES = [json.loads(line) for line in
             (Path(__file__).parents[2] / "data" / "phi_vignettes.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def vocab():
    from medforge.privacy.vocab import load_vocabulary

    return load_vocabulary()


@pytest.mark.parametrize("v", VIGNETTES, ids=[v["id"] for v in VIGNETTES])
def test_no_phi_string_is_sent(v, vocab):
    g = extract_keywords(v["question"], v["options"], KeywordConfig(), vocab)
    sent = json.dumps(g.payload()).lower()
    for phi in v["phi"]:
        assert phi.lower() not in sent, f"{phi!r} would be sent: {g.payload()}"
    assert g.keywords, "a vignette with clinical findings must still yield keywords"
    assert 0 < g.privacy_budget < 1


def test_clinical_terms_survive(vocab):
    v = VIGNETTES[0]
    g = extract_keywords(v["question"], v["options"], KeywordConfig(), vocab)
    assert {"fever", "productive cough", "pleuritic chest pain"} <= set(g.keywords) or \
        {"fever", "chest pain"} <= set(g.keywords)
    assert "34-year-old woman" in g.keywords


def test_age_over_89_not_sent(vocab):
    g = extract_keywords("A 93-year-old man has dyspnea.", {"A": "x", "B": "y"}, KeywordConfig(), vocab)
    assert not any("93" in k for k in g.keywords)
    assert "dyspnea" in g.keywords


@pytest.mark.parametrize("text, kind", [
    ("seen by Dr. Smith", "name"),
    ("lives in Springfield", "geo"),
    ("12 Oak Street", "address"),
    ("ZIP code 90210", "zip"),
    ("on July 4, 2019", "date"),
    ("a 95-year-old", "age_over_89"),
    ("call 555-123-4567", "phone"),
    ("fax 555 123 4567", "phone"),
    ("mail a.b@c.org", "email"),
    ("SSN 123-45-6789", "ssn"),
    ("MRN 1234567", "mrn"),
    ("member id AB123456", "health_plan"),
    ("account number 99887766", "account"),
    ("certificate no. 2020-1234", "certificate"),
    ("DEA number AB1234563", "license"),
    ("VIN 1HGCM82633A004352", "vehicle"),
    ("serial number SN-00123", "device"),
    ("see https://x.org/a", "url"),
    ("from 10.0.0.1", "ip"),
    ("retinal scan on file", "biometric"),
    ("code QX-1234-5678", "unique_id"),
])
def test_each_identifier_kind_detected(text, kind):
    assert kind in {s.kind for s in find_phi(text)}


def test_redact_options_keeps_medical_text():
    assert redact("Bell palsy")[0] == "Bell palsy"
    assert redact("COVID-19 pneumonia")[0] == "COVID-19 pneumonia"
    text, spans = redact("Call 555-010-2233 now")
    assert text == f"Call {REDACTED} now" and spans


def test_payload_is_only_keywords_and_options(vocab):
    g = extract_keywords("A 30-year-old man has fever.", {"A": "x", "B": "y"}, KeywordConfig(), vocab)
    assert set(g.payload()) == {"keywords", "options"}
