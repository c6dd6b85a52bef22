"""Deterministic synthetic MedQA-style rows with PHI annotated, for the privacy-guard benchmark.

Row ``i`` depends only on ``(seed, i)``. Each row carries, beside ``id / question / options /
answer``, the ground truth the benchmark scores against:

* ``phi``: every identifier string planted in the row (question or options). None of them may
  appear in what is sent.
* ``medical``: the medical terms in the row (findings, history, drugs in the question; the
  diagnoses, drugs and procedures in the options). The share of them that reaches the payload
  is the utility the guard keeps.

Identifiers are planted in the question (about half the rows) and inside an answer option
(about one row in three): names in title case and in lower case (first name + surname drawn
from lists that are not on the guard's name list, so nothing is caught for free), phone
numbers, e-mail addresses, URLs with and without a scheme, IPv4 addresses, device serials,
licence plates, account / beneficiary / member numbers, MRNs and dates.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contexts_data import AGES, DRUGS, EXAMS, FINDINGS, HISTORY, SEXES, STEMS  # noqa: E402

FIRST = ["Esperanza", "Thiago", "Anouk", "Dmitri", "Ngozi", "Soledad", "Lars", "Keiko", "Yusuf", "Marisol",
         "Oksana", "Tariq", "Ines", "Bartholomew", "Priyanka", "Ezequiel", "Wanjiru", "Ulrike", "Kofi", "Anneliese"]
LAST = ["Villalobos", "Okonkwo", "Achterberg", "Szymanski", "Quintero", "Haraldsen", "Nakashima", "Abernathy",
        "Castellanos", "Mbeki", "Lindqvist", "Oyelaran", "Vasquez-Ruiz", "Pemberton", "Kowalczyk", "Delacroix",
        "Fairweather", "Balogun", "Trevisan", "Ostrowski"]
STREETS = ["Birchwood Lane", "Juniper Court", "Oakhurst Drive", "Larkspur Avenue", "Millbrook Road"]
DOMAINS = ["mycarenotes.net", "sunnyvaleclinic.org", "healthjournal-pro.com", "patientlink.io"]
DIAGNOSES = ["Pneumococcal pneumonia", "Pulmonary embolism", "Acute pancreatitis", "Hepatitis B infection",
             "Iron deficiency anemia", "Bacterial meningitis", "Nephrotic syndrome", "Sarcoidosis",
             "Hemolytic uremic syndrome", "Aortic dissection", "Cardiac tamponade", "Diabetic ketoacidosis",
             "Acute cholecystitis", "Appendicitis", "Myasthenia gravis", "Guillain-Barre syndrome"]
TREATMENTS = ["Magnesium sulfate", "Carotid sinus massage", "Hemiarthroplasty", "Pericardiocentesis",
              "Intravenous ceftriaxone", "Lumbar puncture", "Colonoscopy", "Echocardiography", "Thoracentesis",
              "Cholecystectomy", "Electrical cardioversion", "Insulin glargine", "Nitrofurantoin", "Alteplase",
              "Levothyroxine", "Methotrexate", "Chest radiograph", "Abdominal ultrasound", "Serum lipase",
              "Spironolactone", "Hemodialysis", "Sumatriptan", "Upper endoscopy", "Tiotropium"]


def _identifier(r: random.Random) -> tuple[str, list[str]]:
    """One identifier phrase and the PHI strings in it."""
    first, last = r.choice(FIRST), r.choice(LAST)
    kind = r.randrange(13)
    if kind == 0:
        return f"{first} {last}", [first, last]
    if kind == 1:
        return f"{first.lower()} {last.lower()}", [first.lower(), last.lower()]
    if kind == 2:
        num = f"{r.randint(200, 989)}-{r.randint(100, 999)}-{r.randint(1000, 9999)}"
        return f"phone {num}", [num]
    if kind == 3:
        mail = f"{first.lower()}.{last.lower()}{r.randint(1, 99)}@example.org"
        return mail, [mail, last.lower()]
    if kind == 4:
        dom = r.choice(DOMAINS)
        url = f"https://{dom}/{last.lower()}" if r.random() < 0.5 else f"{dom}/u/{r.randint(1000, 99999)}"
        return url, [dom.split(".")[0], url]
    if kind == 5:
        ip = f"{r.randint(11, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
        return f"IP {ip}", [ip]
    if kind == 6:
        serial = f"{r.choice(['PMX', 'ICD', 'pmp', 'cgm'])}-{r.randint(10000, 99999)}-{r.choice('QKXZ')}"
        return f"device serial {serial}", [serial]
    if kind == 7:
        plate = f"{r.choice(['KJ', 'TX', 'ab'])}{r.randint(10, 99)} {r.choice(['XPT', 'LMV', 'qrz'])}"
        return f"licence plate {plate}", [plate]
    if kind == 8:
        acct = f"AC-{r.randint(1000000, 9999999)}"
        return f"account number {acct}", [acct]
    if kind == 9:
        ben = f"{r.randint(1, 9)}EG{r.randint(1, 9)}-TE{r.randint(1, 9)}-MK{r.randint(10, 99)}"
        return f"beneficiary number {ben}", [ben]
    if kind == 10:
        mrn = f"{r.randint(10000000, 99999999)}"
        return f"MRN {mrn}", [mrn]
    if kind == 11:
        d = f"{r.randint(1, 12):02d}/{r.randint(1, 28):02d}/{r.randint(2015, 2024)}"
        return f"the visit on {d}", [d]
    n = r.randint(10, 999)
    street = r.choice(STREETS)
    return f"{n} {street}", [f"{n} {street}", street.split()[0]]


OPTION_PHI = ["Discharge with follow-up with {x}", "Call {x} first", "Refer to {x}", "Notify {x}",
              "Send records to {x}", "{x} review"]


def make_row(i: int, seed: int = 0) -> dict:
    r = random.Random(seed * 1_000_003 + i + 7_919)
    age, sex = r.choice(AGES[:85]), r.choice(SEXES)
    f = r.sample(FINDINGS, r.randint(2, 4))
    medical = list(f)
    parts = [f"A {age}-year-old {sex} presents with {', '.join(f[:-1])} and {f[-1]}."]
    phi: list[str] = []
    if r.random() < 0.6:
        h, d = r.choice(HISTORY), r.choice(DRUGS)
        parts.append(f"Past history includes {h}; medications include {d}.")
        medical += [h.lower(), d]
    if r.random() < 0.5:
        e = r.choice(EXAMS)
        parts.append(f"Examination shows {e}.")
    if r.random() < 0.5:
        text, strings = _identifier(r)
        parts.insert(r.randint(0, len(parts)), f"The record lists {text}.")
        phi += strings
    parts.append(r.choice(STEMS))
    pool = r.sample(DIAGNOSES, 2) + r.sample(TREATMENTS, 2)
    r.shuffle(pool)
    options = dict(zip("ABCD", pool, strict=True))
    medical += [o.lower() for o in pool]
    if r.random() < 0.35:
        letter = r.choice("ABCD")
        text, strings = _identifier(r)
        medical.remove(options[letter].lower())
        options[letter] = r.choice(OPTION_PHI).format(x=text)
        phi += strings
    return {"id": f"phi-syn-{seed}-{i:06d}", "question": " ".join(parts), "options": options,
            "answer": r.choice("ABCD"), "phi": phi, "medical": medical}


def write_rows(path: Path, n: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps(make_row(i, seed)) + "\n")
    return path
