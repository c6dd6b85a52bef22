"""The allowlist-first guard on options, row-wide PHI terms and redaction counts (issue 13)."""

import json
import re
from pathlib import Path

import pytest

from medforge.privacy.guard import guard_option, row_terms
from medforge.privacy.keywords import KeywordConfig, extract_keywords
from medforge.privacy.phi import REDACTED

DATA = Path(__file__).parents[2] / "data"
ROWS = [json.loads(line) for name in ("phi_vignettes.jsonl", "phi_vignettes_options.jsonl")
        for line in (DATA / name).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def vocab():
    from medforge.privacy.vocab import load_vocabulary

    return load_vocabulary()


def _sent(g) -> str:
    return json.dumps(g.payload(), ensure_ascii=False).lower()


def _contains(text: str, s: str) -> bool:
    return re.search(r"(?<![^\W_])" + re.escape(s.lower()) + r"(?![^\W_])", text) is not None


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_no_phi_string_sent_from_question_or_options(row, vocab):
    g = extract_keywords(row["question"], row["options"], KeywordConfig(), vocab)
    sent = _sent(g)
    leaked = [p for p in row["phi"] if _contains(sent, p)]
    assert not leaked, f"sent {leaked}: {g.payload()}"
    # counts only: no identifier value is in the audit record
    audit = json.dumps(g.redactions).lower()
    assert all(p.lower() not in audit for p in row["phi"])
    if row["phi"]:
        assert sum(g.redactions.values()) > 0


def test_medical_terms_kept_on_the_vignettes(vocab):
    kept = total = 0
    for row in ROWS:
        sent = _sent(extract_keywords(row["question"], row["options"], KeywordConfig(), vocab))
        total += len(row["medical"])
        kept += sum(m.lower() in sent for m in row["medical"])
    # measured 94-98% (docs/benchmarks.md); the floor is 60%
    assert kept / total >= 0.9, f"{kept}/{total}"


@pytest.mark.parametrize("option", ["Magnesium sulfate", "Carotid sinus massage", "Hemiarthroplasty",
                                    "Pericardiocentesis", "Type 2 diabetes mellitus", "0.9% normal saline 20 mL/kg",
                                    "Vitamin B12 deficiency", "Low-dose aspirin 81 mg daily", "Graves disease",
                                    "HbA1c of 7.5%", "COVID-19 pneumonia", "Guillain-Barre syndrome",
                                    "Percutaneous coronary intervention", "Legionella pneumophila"])
def test_medical_option_survives_whole(option, vocab):
    terms, _, _ = row_terms("A 40-year-old woman has fatigue.", {"A": option}, vocab)
    assert guard_option(option, vocab, terms) == option


@pytest.mark.parametrize("option, secret", [
    ("Discharge with follow-up with Esperanza Villalobos", "villalobos"),
    ("Insulin glargine for ana beltran only", "beltran"),
    ("Insulin glargine for ana beltran only", "ana"),
    ("Ask dr. whitfield", "whitfield"),
    ("Let Grant Hill decide", "grant hill"),
    ("Hope Diaz to decide", "hope"),
    ("Interrogate device pmp-55820-k", "55820"),
    ("Trace plate 8gtr442", "8gtr442"),
    ("Block 10.44.201.7", "10.44.201.7"),
    ("Block 2001:db8:85a3::8a2e:370:7334", "8a2e"),
    ("Read myjointdiary.net/kevin-harlow first", "myjointdiary"),
    ("See https://stones.example-health.com/u/88213", "88213"),
    ("Bill account AC-7731902", "7731902"),
    ("Check beneficiary 1EG4-TE5-MK73", "1eg4"),
    ("Home care at 77 Birchwood Lane", "birchwood"),
    ("Refer to José Núñez", "núñez"),
    ("Call 5558675309", "5558675309"),
])
def test_identifier_in_option_withheld(option, secret, vocab):
    terms, _, _ = row_terms("A 40-year-old woman has fatigue.", {"A": option}, vocab)
    out = guard_option(option, vocab, terms)
    assert REDACTED in out and not _contains(out.lower(), secret), out


def test_phi_found_anywhere_is_redacted_everywhere(vocab):
    q = "Mrs. Jennifer Graves, a 50-year-old woman with Graves disease, has palpitations and tremor."
    opts = {"A": "Methimazole", "B": "Ask graves about it", "C": "Radioactive iodine", "D": "Observation"}
    g = extract_keywords(q, opts, KeywordConfig(), vocab)
    sent = _sent(g)
    assert "graves" not in sent  # not even inside the keyword "graves disease"
    assert g.options["A"] == "Methimazole" and "palpitations" in g.keywords
    # an identifier that appears only in an option is withheld from every other option too
    opts = {"A": "Refer to Marisol Quintero", "B": "Quintero protocol", "C": "Mammography"}
    g = extract_keywords("A 38-year-old woman has a breast lump.", opts, KeywordConfig(), vocab)
    assert "quintero" not in _sent(g) and g.options["C"] == "Mammography"


def test_redaction_counts_by_type(vocab):
    g = extract_keywords("A 45-year-old man, MRN 00482913, has polyuria.",
                         {"A": "Call 555-010-2233", "B": "Metformin", "C": "Refer to Zebulon Quarrington"},
                         KeywordConfig(), vocab)
    assert g.redactions.get("mrn") == 1 and g.redactions.get("phone") == 1
    assert g.redactions.get("unlisted", 0) >= 1
    assert all(isinstance(v, int) and v > 0 for v in g.redactions.values())


def test_redact_options_false_sends_verbatim(vocab):
    g = extract_keywords("A 45-year-old man.", {"A": "Call ana beltran", "B": "x"}, KeywordConfig(redact_options=False), vocab)
    assert g.options["A"] == "Call ana beltran"


def test_keywords_cli_prints_redaction_totals(tmp_path, capsys):
    from medforge.cli import main

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"question": "Mr. John Smith (MRN 5551234) has fever.",
                               "options": ["Malaria", "Call john smith at 555-201-4432"]}) + "\n")
    assert main(["keywords", "--input", str(src), "--output", str(tmp_path / "out.jsonl")]) == 0
    cap = capsys.readouterr()
    summary = json.loads(cap.out.strip().splitlines()[-1])
    assert summary["redactions"]["mrn"] == 1 and summary["redactions"]["name"] >= 1
    assert "redacted by identifier type" in cap.err and "mrn=1" in cap.err
    budget = json.loads((tmp_path / "out.budget.jsonl").read_text())
    assert budget["redactions"] == summary["redactions"]
    assert "smith" not in (tmp_path / "out.jsonl").read_text().lower()
