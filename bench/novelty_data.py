"""Deterministic generator of realistic medical instructions for the novelty benchmark.

Instructions are composed from an opener, a task core with clinical slots, and optional
context/constraint clauses, giving MedInstruct-like lengths (~20 rouge tokens) and wide lexical
variety. About a quarter are near-duplicates of earlier ones (word drops, swaps, synonym edits,
slot changes, recombined halves), as LLM generators produce. Written from scratch: no AlpaCare
text is embedded here.
"""

from __future__ import annotations

import random

CONDITIONS = """type 2 diabetes mellitus|type 1 diabetes|essential hypertension|asthma|chronic obstructive
pulmonary disease|community-acquired pneumonia|heart failure with reduced ejection fraction|atrial
fibrillation|acute myocardial infarction|stable angina|ischemic stroke|transient ischemic attack|
migraine|epilepsy|multiple sclerosis|Parkinson's disease|Alzheimer's disease|major depressive
disorder|generalized anxiety disorder|bipolar disorder|schizophrenia|rheumatoid arthritis|
osteoarthritis|gout|systemic lupus erythematosus|psoriasis|atopic dermatitis|acne vulgaris|
chronic kidney disease|acute kidney injury|nephrotic syndrome|urinary tract infection|
pyelonephritis|benign prostatic hyperplasia|prostate cancer|breast cancer|colorectal cancer|
lung adenocarcinoma|pancreatic cancer|hepatocellular carcinoma|cirrhosis|hepatitis B|hepatitis C|
non-alcoholic fatty liver disease|peptic ulcer disease|gastroesophageal reflux disease|Crohn's
disease|ulcerative colitis|irritable bowel syndrome|celiac disease|acute pancreatitis|
cholecystitis|appendicitis|diverticulitis|iron deficiency anemia|sickle cell disease|
thalassemia|hemophilia A|deep vein thrombosis|pulmonary embolism|hypothyroidism|Graves'
disease|Cushing's syndrome|Addison's disease|polycystic ovary syndrome|endometriosis|
preeclampsia|gestational diabetes|osteoporosis|tuberculosis|HIV infection|malaria|dengue fever|
Lyme disease|sepsis|meningitis|cellulitis|herpes zoster|influenza|COVID-19|measles|
infectious mononucleosis|glaucoma|cataract|macular degeneration|otitis media|sinusitis|
obstructive sleep apnea|anorexia nervosa|ADHD|autism spectrum disorder|Kawasaki disease|
cystic fibrosis|Down syndrome|sarcoidosis|pulmonary fibrosis|aortic stenosis|
hypertrophic cardiomyopathy|peripheral artery disease|abdominal aortic aneurysm|varicose veins|
carpal tunnel syndrome|low back pain|plantar fasciitis|anaphylaxis|hyperkalemia|hyponatremia|
diabetic ketoacidosis|thyroid storm|alcohol withdrawal|opioid use disorder|lead poisoning"""

DRUGS = """metformin|insulin glargine|empagliflozin|semaglutide|lisinopril|amlodipine|losartan|
hydrochlorothiazide|metoprolol|carvedilol|atorvastatin|rosuvastatin|aspirin|clopidogrel|
apixaban|warfarin|heparin|furosemide|spironolactone|digoxin|amiodarone|albuterol|tiotropium|
fluticasone|montelukast|prednisone|methotrexate|adalimumab|hydroxychloroquine|allopurinol|
colchicine|ibuprofen|naproxen|acetaminophen|morphine|oxycodone|buprenorphine|naloxone|
sertraline|fluoxetine|escitalopram|venlafaxine|bupropion|lithium|valproate|lamotrigine|
levetiracetam|carbamazepine|quetiapine|risperidone|olanzapine|haloperidol|lorazepam|
zolpidem|levothyroxine|methimazole|omeprazole|pantoprazole|ondansetron|loperamide|
amoxicillin|azithromycin|ciprofloxacin|doxycycline|ceftriaxone|vancomycin|piperacillin-
tazobactam|nitrofurantoin|trimethoprim-sulfamethoxazole|isoniazid|rifampin|oseltamivir|
acyclovir|tenofovir|dolutegravir|fluconazole|ivermectin|tamoxifen|letrozole|pembrolizumab|
trastuzumab|cisplatin|donepezil|levodopa|sumatriptan|topiramate|gabapentin|pregabalin|
finasteride|tamsulosin|sildenafil|alendronate|denosumab|epinephrine|ferrous sulfate|
folic acid|vitamin D|potassium chloride"""

TESTS = """complete blood count|basic metabolic panel|liver function tests|HbA1c|lipid panel|
thyroid-stimulating hormone|troponin|B-type natriuretic peptide|D-dimer|arterial blood gas|
urinalysis|urine culture|blood cultures|chest X-ray|CT pulmonary angiography|non-contrast head
CT|brain MRI|lumbar puncture|electrocardiogram|echocardiogram|exercise stress test|Holter
monitoring|spirometry|polysomnography|colonoscopy|upper endoscopy|abdominal ultrasound|
mammography|low-dose CT screening|DEXA scan|PSA test|Pap smear|HPV testing|hepatitis B
serology|HIV viral load|CD4 count|tuberculin skin test|interferon-gamma release assay|
ferritin|serum electrolytes|creatinine clearance|C-reactive protein|erythrocyte sedimentation
rate|antinuclear antibody|rheumatoid factor|coagulation profile|lactate|procalcitonin"""

SYMPTOMS = """chest pain|shortness of breath|persistent cough|fever and chills|night sweats|
unintentional weight loss|fatigue|palpitations|syncope|dizziness|headache|blurred vision|
sudden vision loss|hearing loss|sore throat|abdominal pain|nausea and vomiting|diarrhea|
constipation|blood in the stool|jaundice|dysuria|frequent urination|hematuria|joint pain|
morning stiffness|back pain|leg swelling|numbness in the hands|muscle weakness|tremor|
memory loss|confusion|insomnia|low mood|anxiety attacks|rash|itching|hair loss|
easy bruising|heavy menstrual bleeding|pelvic pain|wheezing|hoarseness|difficulty swallowing|
heartburn|excessive thirst|cold intolerance|heat intolerance|seizures"""

PATIENTS = """a 45-year-old man|a 67-year-old woman|a 23-year-old college student|a pregnant woman
at 32 weeks|a 4-year-old child|a newborn|an 82-year-old nursing home resident|a 35-year-old
marathon runner|a 58-year-old smoker|a 16-year-old athlete|a 50-year-old truck driver|a
29-year-old postpartum mother|a 72-year-old man with dementia|a 40-year-old office worker|a
recent immigrant from West Africa|a veteran with PTSD|a patient on hemodialysis|a kidney
transplant recipient|a patient with HIV|an elderly patient on warfarin|a teenager with type 1
diabetes|a 61-year-old woman after menopause|a 38-year-old man who drinks heavily|a
9-year-old boy|a 55-year-old woman with obesity"""

AUDIENCES = """a first-year medical student|a nursing student|a patient with low health literacy|
a worried parent|a caregiver|a pharmacist|a primary care physician|an emergency physician|a
community health worker|a high school biology class|a hospital administrator|a physiotherapist|
an elderly patient|a newly diagnosed patient|a medical interpreter"""

ASPECTS = """pathophysiology|epidemiology|risk factors|clinical presentation|diagnostic criteria|
differential diagnosis|first-line treatment|long-term management|complications|prognosis|
prevention strategies|screening recommendations|lifestyle modifications|genetic basis|
mechanism of disease progression|red flag symptoms|follow-up schedule|nutritional management"""

DRUG_ASPECTS = """mechanism of action|common side effects|serious adverse effects|
contraindications|drug interactions|dosing in renal impairment|monitoring requirements|
use in pregnancy|overdose management|pharmacokinetics|patient counseling points|
therapeutic alternatives"""

SETTINGS = """in the emergency department|in a rural clinic|during a telehealth visit|on a busy
medical ward|in the intensive care unit|at a community pharmacy|in a school nurse's office|
during a home visit|in a low-resource setting|at a pre-operative assessment"""

CONSTRAINTS = """in simple terms|in no more than 150 words|using bullet points|citing current
guidelines|with one concrete example|avoiding medical jargon|in a friendly tone|step by step|
as a short table|with a brief summary at the end|in three sentences|highlighting what to avoid|
for a patient leaflet|as a multiple-choice question with four options|with evidence levels"""

OPENERS = [
    "",
    "",
    "",
    "",
    "",
    "Please",
    "Briefly",
    "As a clinician,",
    "For a teaching session,",
    "Could you",
    "In your own words,",
    "Acting as a medical educator,",
    "Based on current evidence,",
    "For an exam review,",
    "As a pharmacist,",
    "From a public health perspective,",
    "Imagine you are a triage nurse and",
    "Using your clinical knowledge,",
]

QUALIFIERS = """acute|chronic|severe|mild|refractory|early-stage|advanced|recurrent|newly diagnosed|
poorly controlled|drug-induced|pediatric|late-onset|uncomplicated|complicated"""

QUESTIONS = """What is the most likely diagnosis|What is your next step in management|Which
investigation would you order first|What are the three most important differential diagnoses|
Which medication would you start and at what dose|Is urgent referral needed, and why|What
complications should you anticipate|How would you explain the findings to the family|What
would you monitor over the next 24 hours|Which risk factors are present in this case|What is the
likely mechanism behind these findings|Should this patient be admitted"""

# Case vignettes carry the numbers and specifics that make real instructions lexically diverse.
VIGNETTES = [
    "{P} with a history of {C} presents with {S} for {k} days. Blood pressure is {sbp}/{dbp} mmHg "
    "and heart rate is {hr} beats per minute. {Q}?",
    "{P} taking {D} reports {S} and {S2} since {k} days ago; temperature is {temp} degrees "
    "Celsius. {Q}?",
    "A patient with {C} has a {T} showing a value of {lab} and complains of {S}. {Q}?",
    "{P} weighing {wt} kg was started on {D} {k} weeks ago and now has {S}. {Q}?",
    "After {k} hours of {S}, {P} arrives with an oxygen saturation of {spo2}% on room air. {Q}?",
    "{P} with {C} and {C2} is on {D} and {D2}. Her latest {T} came back abnormal. {Q}?",
]

# Task cores; {C} condition, {D} drug, {T} test, {S} symptom, {P} patient, {A} audience,
# {X} aspect, {Y} drug aspect, {G} setting.
CORES = [
    "explain the {X} of {C} to {A}",
    "describe the {X} of {C}",
    "summarize the {Y} of {D}",
    "list the {Y} of {D} that {A} should know",
    "what are the {X} of {C}",
    "how would you interpret an abnormal {T} in {P}",
    "{P} presents with {S} and {S2}. What is the most likely diagnosis",
    "{P} reports {S} for two weeks. Which investigations would you order first",
    "outline a management plan for {P} with {C} {G}",
    "compare {D} and {D2} for treating {C}",
    "when is {T} indicated in suspected {C}",
    "write a discharge note for {P} treated for {C}",
    "draft patient education material about {C} for {A}",
    "identify the drug interactions between {D} and {D2}",
    "what counseling should {P} receive when starting {D}",
    "design a quiz question about the {X} of {C}",
    "how should {D} be adjusted in {P} with {C}",
    "classify the following symptoms as urgent or non-urgent: {S}, {S2}, {S3}",
    "explain why {T} is used to monitor {C}",
    "describe how {C} differs from {C2} in {X}",
    "what lifestyle advice would you give {P} with {C}",
    "create a triage checklist for {S} {G}",
    "translate this explanation of {C} into plain language for {A}",
    "suggest questions to ask {P} who complains of {S}",
    "evaluate whether {D} is appropriate for {P}",
    "give a differential diagnosis for {S} in {P}",
    "describe the expected findings on {T} in {C}",
    "rewrite the following advice about {D} so that {A} can understand it",
]


def _split(block: str) -> list[str]:
    return [w.strip().replace("\n", " ") for w in block.replace("\n", " ").split("|") if w.strip()]


_POOLS = {
    "C": _split(CONDITIONS),
    "D": _split(DRUGS),
    "T": _split(TESTS),
    "S": _split(SYMPTOMS),
    "P": _split(PATIENTS),
    "A": _split(AUDIENCES),
    "X": _split(ASPECTS),
    "Y": _split(DRUG_ASPECTS),
    "G": _split(SETTINGS),
}
_CONSTRAINTS = _split(CONSTRAINTS)
_SYNONYMS = {
    "explain": "describe",
    "describe": "explain",
    "list": "enumerate",
    "summarize": "outline",
    "patient": "individual",
    "treating": "managing",
    "common": "frequent",
    "should": "must",
    "would": "could",
    "first": "initially",
    "plan": "strategy",
    "advice": "recommendations",
    "what": "which",
}


_QUALIFIERS = _split(QUALIFIERS)
_QUESTIONS = _split(QUESTIONS)


def _fill(core: str, rng: random.Random) -> str:
    out = core
    for slot, pool in _POOLS.items():
        a, b, c = rng.sample(pool, 3)
        if slot == "C" and rng.random() < 0.4:
            a = f"{rng.choice(_QUALIFIERS)} {a}"
        out = out.replace("{" + slot + "2}", b).replace("{" + slot + "3}", c).replace("{" + slot + "}", a)
    nums = {
        "{k}": str(rng.randint(2, 21)),
        "{sbp}": str(rng.randint(85, 210)),
        "{dbp}": str(rng.randint(45, 125)),
        "{hr}": str(rng.randint(42, 160)),
        "{temp}": f"{rng.uniform(35.5, 40.5):.1f}",
        "{lab}": f"{rng.uniform(0.1, 400):.1f}",
        "{wt}": str(rng.randint(3, 140)),
        "{spo2}": str(rng.randint(78, 99)),
        "{Q}": rng.choice(_QUESTIONS),
    }
    for k, v in nums.items():
        out = out.replace(k, v)
    return out[0].upper() + out[1:]


def _fresh(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return _fill(rng.choice(VIGNETTES), rng)
    core = _fill(rng.choice(CORES), rng)
    opener = rng.choice(OPENERS)
    text = f"{opener} {core[0].lower() + core[1:]}" if opener else core
    r = rng.random()
    if r < 0.45:
        text += ", " + rng.choice(_CONSTRAINTS)
    if rng.random() < 0.25:
        text += f", and mention the {rng.choice(_POOLS['X'])} of {rng.choice(_POOLS['C'])}"
    end = "?" if core.split()[0].lower() in {"what", "how", "when", "which"} else "."
    return text + end


def _perturb(text: str, rng: random.Random) -> str:
    words = text.split()
    op = rng.random()
    if op < 0.25 and len(words) > 4:  # drop one to three words
        for _ in range(rng.randint(1, 3)):
            if len(words) > 3:
                del words[rng.randrange(len(words))]
    elif op < 0.45 and len(words) > 3:  # swap neighbours
        k = rng.randrange(len(words) - 1)
        words[k], words[k + 1] = words[k + 1], words[k]
    elif op < 0.65:  # synonym edits
        words = [_SYNONYMS.get(w.lower(), w) if rng.random() < 0.6 else w for w in words]
    elif op < 0.85:  # change one clinical slot value
        pool = _POOLS[rng.choice("CDTSP")]
        text2 = text
        for v in pool:
            if v in text2:
                text2 = text2.replace(v, rng.choice(pool), 1)
                break
        else:
            text2 = text + " " + rng.choice(_CONSTRAINTS)
        return text2
    else:  # add a polite/filler phrase
        words.insert(rng.randrange(len(words) + 1), rng.choice(["please", "briefly", "also", "kindly"]))
    return " ".join(words)


def generate(n: int, seed: int = 0, dup_share: float = 0.25) -> list[str]:
    """Return ``n`` instructions; the same arguments always give the same list.

    Args:
        n: Number of instructions.
        seed: RNG seed.
        dup_share: Share of near-duplicates (perturbed or recombined earlier instructions).
    """
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(n):
        if out and rng.random() < dup_share:
            # Near-duplicates mostly of recent text (generators repeat themselves locally).
            src = out[max(0, len(out) - rng.randint(1, 2000)) if rng.random() < 0.7 else rng.randrange(len(out))]
            if rng.random() < 0.15:
                other = rng.choice(out).split()
                a = src.split()
                text = " ".join(a[: len(a) // 2] + other[len(other) // 2 :])
            else:
                text = _perturb(src, rng)
        else:
            text = _fresh(rng)
        out.append(text)
    return out
