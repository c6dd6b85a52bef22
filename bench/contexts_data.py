"""Deterministic synthetic MCQ rows for the context-generation benchmark.

Row ``i`` depends only on ``(seed, i)``: questions are assembled from clinical findings,
histories, exam findings and question stems (plus, in ~1 row in 8, an identifier such as a
name, date or phone number), so keyword extraction and the PHI guard do real work and no two
rows are the same text.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

AGES = list(range(1, 96))
SEXES = ["man", "woman", "boy", "girl", "patient"]
FINDINGS = [
    "fever", "productive cough", "pleuritic chest pain", "shortness of breath", "hemoptysis", "night sweats",
    "weight loss", "jaundice", "pruritus", "abdominal pain", "nausea", "vomiting", "diarrhea", "hematochezia",
    "melena", "dysphagia", "headache", "photophobia", "neck stiffness", "seizures", "confusion", "syncope",
    "palpitations", "orthopnea", "bilateral leg edema", "polyuria", "polydipsia", "fatigue", "arthralgia",
    "malar rash", "hematuria", "dysuria", "flank pain", "back pain", "muscle weakness", "diplopia", "ptosis",
    "tremor", "bradykinesia", "hepatomegaly", "splenomegaly", "lymphadenopathy", "wheezing", "stridor",
    "cyanosis", "pallor", "petechiae", "easy bruising", "hoarseness", "tinnitus", "vertigo", "anosmia",
]
HISTORY = [
    "type 2 diabetes mellitus", "hypertension", "asthma", "chronic kidney disease", "atrial fibrillation",
    "rheumatoid arthritis", "hypothyroidism", "HIV infection", "alcohol use disorder", "COPD", "migraine",
    "sickle cell disease", "systemic lupus erythematosus", "heart failure", "cirrhosis", "tuberculosis",
]
DRUGS = ["metformin", "lisinopril", "warfarin", "atorvastatin", "levothyroxine", "prednisone", "amoxicillin",
         "ibuprofen", "omeprazole", "furosemide", "insulin", "methotrexate", "amiodarone", "lithium"]
EXAMS = ["tachycardia", "hypotension", "crackles at the lung bases", "a systolic murmur", "rebound tenderness",
         "an enlarged thyroid", "decreased breath sounds", "conjunctival pallor", "a positive Babinski sign",
         "papilledema", "ascites", "clubbing", "a palpable purpura"]
STEMS = ["Which of the following is the most likely diagnosis?", "What is the most appropriate next step in management?",
         "Which of the following is the most likely cause?", "Which laboratory finding is most likely?",
         "Which of the following is the best initial treatment?", "What is the mechanism of the most likely drug?"]
PHI = ["She was seen by Dr. Alan Parkinson last week.", "He lives in Springfield, 1420 Maple Grove Avenue.",
       "He was admitted on March 14, 2021.", "Call back at (555) 867-5309.", "MRN 84412093 is on the chart.",
       "Her husband Robert Kelly brought her in."]
OPTIONS = ["Pneumococcal pneumonia", "Pulmonary embolism", "Acute pancreatitis", "Hepatitis B infection",
           "Iron deficiency anemia", "Graves disease", "Bacterial meningitis", "Nephrotic syndrome", "Sarcoidosis",
           "Chest radiograph", "Abdominal ultrasound", "Lumbar puncture", "Intravenous ceftriaxone", "Observation",
           "Colonoscopy", "Echocardiography", "Serum lipase", "Thyroid-stimulating hormone", "Liver biopsy"]


def make_row(i: int, seed: int = 0) -> dict:
    r = random.Random(seed * 1_000_003 + i)
    age, sex = r.choice(AGES), r.choice(SEXES)
    f = r.sample(FINDINGS, r.randint(2, 5))
    parts = [f"A {age}-year-old {sex} presents with {', '.join(f[:-1])} and {f[-1]} for {r.randint(2, 20)} days."]
    if r.random() < 0.7:
        parts.append(f"Past history includes {r.choice(HISTORY)}; medications include {r.choice(DRUGS)}.")
    if r.random() < 0.8:
        parts.append(f"Examination shows {r.choice(EXAMS)} and {r.choice(EXAMS)}.")
    if r.random() < 0.125:
        parts.append(r.choice(PHI))
    parts.append(r.choice(STEMS))
    opts = r.sample(OPTIONS, 4)
    return {"id": f"syn-{seed}-{i:08d}", "question": " ".join(parts),
            "options": dict(zip("ABCD", opts, strict=True)), "answer": r.choice("ABCD")}


def write_rows(path: Path, n: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps(make_row(i, seed)) + "\n")
    return path
