"""The second wall: a denylist for the HIPAA Safe Harbor identifiers (45 CFR 164.514(b)(2)).

The allowlist (:mod:`medforge.privacy.vocab`) is the main wall: a word is sent only if it is
a medical term. This module finds spans that *look like* identifiers, so that

* a keyword overlapping such a span is dropped even though the vocabulary has it
  ("Dr. Graves", "lives in Addison", "Bell St."), and
* answer options, which cross the boundary verbatim, have such spans replaced by
  ``[REDACTED]``.

Patterns are deliberately eager where a false alarm is cheap (keywords come from an
allowlist, so over-matching in the question only costs a keyword) and need a context word
where they would otherwise wreck ordinary option text (ZIP codes, account numbers).

Identifier types (the ``kind`` of a :class:`PhiSpan`): ``name``, ``geo`` (places below state
level), ``address``, ``zip``, ``date``, ``age_over_89``, ``phone`` (incl. fax), ``email``,
``ssn``, ``mrn``, ``health_plan``, ``account``, ``certificate``, ``license``, ``vehicle``,
``device``, ``url``, ``ip``, ``biometric``, ``unique_id``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from medforge.privacy.vocab import name_denylist

REDACTED = "[REDACTED]"

_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
          r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
# An identifier value must hold a digit: "insurance company" is no policy number.
_ID = r"\s*[:#]?\s*(?:(?:number|no\.?|num|id|#)\s*[:#]?\s*)?(?=[A-Z0-9\-]*\d)[A-Z0-9][A-Z0-9\-]{3,}"
_TITLE = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sr|Sra|Mister|Doctor|Nurse)\.?"
_CAP = r"[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?"
_STREET = (r"(?:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|"
           r"terrace|circle|highway|hwy|parkway|pkwy|square|sq|trail)")


class _Rule(NamedTuple):
    """One identifier pattern and the cheap checks that must hold before it is tried.

    ``gate`` -- "digit", or substrings of the lower-cased text (one suffices) -- is checked for every text.
    ``fast`` holds extra necessary conditions, checked for ASCII text only: every group must hold;
    a group of strings holds when one of them is a substring of the lower-cased text, an int ``n``
    when the text has a run of ``n`` or more digits. Each is implied by a match (for ASCII text,
    re.I folding is plain ASCII case), so skipping a pattern whose conditions fail never changes
    the result -- it only saves the scan, which is most of the cost of a row (a million rows stay
    fast). Non-ASCII text (Unicode digits and case folding) runs every pattern its gate lets through.
    """

    kind: str
    pattern: str
    flags: int
    gate: str | tuple[str, ...] | None
    fast: tuple[tuple[str, ...] | int, ...] = ()


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_PATTERNS: list[_Rule] = [
    _Rule("email", r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", 0, "@"),
    _Rule("url", r"\b(?:https?|ftp)://\S+|\bwww\.[\w-]+(?:\.[\w-]+)+\S*", re.I, ("://", "www.")),
    # a bare domain ("myclinic.org/u/77"): a patient's page or a clinic's site is an identifier
    _Rule("url", r"\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|edu|gov|io|info|biz|uk|"
                 r"health|app|xyz|site|online)\b(?:/\S*)?", re.I, ".", fast=((".",),)),
    _Rule("ip", r"\b(?:\d{1,3}\.){3}\d{1,3}\b", 0, "digit", fast=((".",),)),
    _Rule("ip", r"\b(?:[0-9a-f]{1,4}:){3,7}[0-9a-f]{1,4}\b", re.I, "digit", fast=((":",),)),
    _Rule("ip", r"(?<![\w:])(?=[0-9a-f:]*::)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}", re.I, "::"),  # IPv6 with "::"
    _Rule("ssn", r"\b\d{3}-\d{2}-\d{4}\b", 0, "digit", fast=(4, ("-",))),
    _Rule("ssn", r"\b(?:ssn|social security(?: number| no\.?)?)\s*[:#]?\s*\d[\d -]{6,}\d", re.I, "digit", fast=(("ssn", "social security"),)),
    _Rule("phone", r"(?:\+?\d{1,3}[\s.-]?)?\(?\b\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}\b", 0, "digit", fast=(4,)),
    _Rule("phone", r"\b(?:phone|tel|telephone|fax|cell|mobile|pager)\s*(?:number|no\.?)?\s*[:#]?\s*\+?[\d][\d ()./-]{5,}\d", re.I, "digit", fast=(("phone", "tel", "fax", "cell", "mobile", "pager"),)),
    _Rule("date", r"\b\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}\b", 0, "digit", fast=(2, ("/", ".", "-"))),
    _Rule("date", r"\b\d{4}[/.-]\d{1,2}[/.-]\d{1,2}\b", 0, "digit", fast=(4,)),
    _Rule("date", rf"\b{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?\b", re.I, "digit", fast=(_MONTHS,)),
    _Rule("date", rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}(?:,?\s+\d{{4}})?\b", re.I, "digit", fast=(_MONTHS,)),
    _Rule("date", rf"\b(?:born|admitted|discharged|died|dob|date of birth|on)\s*[:]?\s*{_MONTH}\s+\d{{4}}\b", re.I, "digit", fast=(_MONTHS,)),
    _Rule("age_over_89", r"\b(?:9\d|1[0-4]\d)[\s-]*(?:years?|yrs?|y/?o)(?:[\s-]*old)?\b", re.I, "digit", fast=(2, ("9", "1"), ("y",))),
    _Rule("age_over_89", r"\b(?:aged?|age of)\s*(?:9\d|1[0-4]\d)\b", re.I, "digit", fast=(2, ("age",))),
    _Rule("age_over_89", r"\b(?:nonagenarian|centenarian)\b", re.I, ("nonagenarian", "centenarian")),
    _Rule("mrn", rf"\b(?:mrn|medical record(?: number| no\.?)?|chart(?: number| no\.?)|patient id){_ID}", re.I, "digit", fast=(("mrn", "medical record", "chart", "patient id"),)),
    _Rule("health_plan", rf"\b(?:health plan|member|beneficiary|subscriber|insurance|policy|medicare|medicaid|group)(?:\s+(?:id|number|no\.?))?{_ID}", re.I, "digit", fast=(("health plan", "member", "beneficiary", "subscriber", "insurance", "policy", "medicare", "medicaid", "group"),)),
    _Rule("account", rf"\b(?:account|acct|billing|invoice|credit card|card)(?:\s+(?:id|number|no\.?))?{_ID}", re.I, "digit", fast=(("account", "acct", "billing", "invoice", "card"),)),
    _Rule("certificate", rf"\b(?:certificate|cert\.?|birth certificate|death certificate)(?:\s+(?:id|number|no\.?))?{_ID}", re.I, "digit", fast=(("cert",),)),
    _Rule("license", rf"\b(?:licen[cs]e|driver'?s licen[cs]e|DEA|NPI|passport)(?:\s+(?:id|number|no\.?))?{_ID}", re.I, "digit", fast=(("licen", "dea", "npi", "passport"),)),
    _Rule("vehicle", r"\b(?:VIN|vehicle identification number)\s*[:#]?\s*[A-HJ-NPR-Z0-9]{11,17}\b", re.I, "digit", fast=(("vin", "vehicle identification number"),)),
    _Rule("vehicle", r"\b[A-HJ-NPR-Z0-9]{17}\b", 0, "digit"),
    _Rule("vehicle", r"\b(?:licen[cs]e plate|plate(?: number| no\.?)?|registration)\s*[:#]?\s*[A-Z0-9][A-Z0-9 -]{2,9}[A-Z0-9]\b", re.I, "digit", fast=(("plate", "registration"),)),
    _Rule("device", rf"\b(?:serial|serial number|s/n|device id|UDI|IMEI|MAC address|pacemaker serial|implant id)(?:\s+(?:number|no\.?))?{_ID}", re.I, "digit", fast=(("serial", "s/n", "device id", "udi", "imei", "mac address", "implant id"),)),
    _Rule("device", r"\(01\)\d{14}", 0, "digit", fast=(14, ("(01)",))),
    _Rule("device", r"\b(?:[0-9A-F]{2}[:-]){5}[0-9A-F]{2}\b", re.I, "digit", fast=((":", "-"),)),
    _Rule("biometric", r"\b(?:finger ?prints?|retina(?:l)? scans?|iris scans?|voice ?prints?|palm ?prints?|"
                       r"facial (?:photo(?:graph)?s?|images?|scans?)|full[- ]face photo(?:graph)?s?|dna profile|gait signature)"
                       rf"(?:\s*{_ID})?", re.I, ("print", "scan", "photo", "image", "dna", "gait")),
    # capitalised street names take any suffix ("77 Birchwood Ln"); lower-case ones only a full street
    # word, so that "1 mg. Ask Dr." or "2 drains in place" is no address
    _Rule("address", rf"\b\d{{1,6}}\s+(?:[A-Z][a-z]+\.?\s+){{1,4}}(?i:{_STREET})\b\.?", 0, "digit"),
    _Rule("address", r"\b\d{1,6}\s+(?:[a-z]+\s+){1,3}(?:street|avenue|road|lane|boulevard|drive|court|terrace|"
                     r"parkway|highway)\b", re.I, "digit", fast=(("street", "avenue", "road", "lane", "boulevard",
                                                                  "drive", "court", "terrace", "parkway", "highway"),)),
    _Rule("address", r"\b(?:p\.?\s?o\.?\s+box|apartment|apt\.?|suite|unit)\s*#?\s*\d+[A-Z]?\b", re.I, "digit", fast=(("box", "apartment", "apt", "suite", "unit"),)),
    _Rule("zip", r"\b(?:zip(?:\s*code)?|postal code|postcode)\s*[:#]?\s*\d{5}(?:-\d{4})?\b", re.I, "digit", fast=(5, ("zip", "postal", "postcode"))),
    _Rule("zip", r"\b[A-Z]{2}\s+\d{5}(?:-\d{4})?\b", 0, "digit", fast=(5,)),
    _Rule("zip", r"\b\d{5}-\d{4}\b", 0, "digit", fast=(5, ("-",))),
    _Rule("geo", rf"\b(?:lives|living|resides|residing|resident|born|grew up|moved|relocated|travell?ed|works|from)\s+(?:in|at|to|near|of)?\s*(?:the\s+)?{_CAP}(?:\s+{_CAP}){{0,2}}(?:,\s*[A-Z]{{2}}\b)?", 0, None, fast=(("lives", "living", "resides", "residing", "resident", "born", "grew up", "moved", "relocated", "travel", "works", "from"),)),
    _Rule("geo", rf"\b{_CAP}(?:\s+{_CAP})?\s+(?:County|City|Township|Village|Borough|Parish|Heights|Springs)\b", 0, None, fast=(("county", "city", "township", "village", "borough", "parish", "heights", "springs"),)),
    _Rule("name", rf"\b{_TITLE}\s+{_CAP}(?:\s+{_CAP})?", 0, None),
    _Rule("name", rf"\b(?:named|name is|called|patient|pt\.?|husband|wife|son|daughter|mother|father|spouse|contact|by)\s*[:,]?\s+{_CAP}\s+{_CAP}(?:\s+{_CAP})?", 0, None),
    _Rule("unique_id", r"\b(?=[A-Z0-9-]*\d[A-Z0-9-]*\d[A-Z0-9-]*\d[A-Z0-9-]*\d)(?=[A-Z0-9-]*[A-Z])[A-Z0-9][A-Z0-9-]{6,}\b", 0, "digit"),
    _Rule("unique_id", r"\b\d{7,}\b", 0, "digit", fast=(7,)),
]
_COMPILED = [(r.kind, re.compile(r.pattern, r.flags), r.gate, r.fast) for r in _PATTERNS]
_CAP_WORD = re.compile(r"\b[A-Z][a-z]+\b")
_DIGIT = re.compile(r"\d")
_DIGIT_RUN = re.compile(r"\d+")


def _fast_gate_ok(groups: tuple, lower: str, max_run: int) -> bool:
    for g in groups:
        if isinstance(g, int):
            if max_run < g:
                return False
        elif not any(x in lower for x in g):
            return False
    return True


@dataclass(frozen=True)
class PhiSpan:
    """A suspected identifier: ``text[start:end]`` is of ``kind``."""

    kind: str
    start: int
    end: int


def find_phi(text: str, names: bool = True) -> list[PhiSpan]:
    """All suspected identifier spans in ``text``, sorted by start (overlaps kept)."""
    lower = text.lower()
    has_digit = _DIGIT.search(text) is not None
    fast = text.isascii()
    max_run = max(map(len, _DIGIT_RUN.findall(text)), default=0) if fast and has_digit else 0
    spans = []
    for kind, rx, gate, extra in _COMPILED:
        if gate == "digit":
            if not has_digit:
                continue
        elif isinstance(gate, str) and gate not in lower:
            continue
        elif isinstance(gate, tuple) and not any(g in lower for g in gate):
            continue
        if fast and extra and not _fast_gate_ok(extra, lower, max_run):
            continue
        spans.extend(PhiSpan(kind, m.start(), m.end()) for m in rx.finditer(text))
    if names:
        spans.extend(name_list_spans(text))
    return sorted(spans, key=lambda s: (s.start, -s.end))


def name_list_spans(text: str) -> list[PhiSpan]:
    """A capitalised word on the name list is a name unless it opens a sentence, where every word
    is capitalised ("Graves disease ..." stays; "... seen by Kelly" goes)."""
    deny = name_denylist()
    return [PhiSpan("name", m.start(), m.end()) for m in _CAP_WORD.finditer(text)
            if m.group(0).lower() in deny and not _sentence_start(text, m.start())]


def _sentence_start(text: str, pos: int) -> bool:
    before = text[:pos].rstrip()
    return not before or before[-1] in ".!?:\n\"'"


def merge_spans(spans: list[PhiSpan]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for s in sorted(spans, key=lambda s: s.start):
        if out and s.start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], s.end)
        else:
            out.append([s.start, s.end])
    return [(a, b) for a, b in out]


def overlaps(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    return any(a < end and start < b for a, b in spans)


def redact(text: str) -> tuple[str, list[PhiSpan]]:
    """``text`` with every suspected identifier replaced by ``[REDACTED]``, and the spans found.

    Names are matched by title/context patterns only here, not by the bare name list, so that
    option text such as "Graves disease" or "Bell palsy" survives.
    """
    spans = find_phi(text, names=False)
    if not spans:
        return text, []
    parts, last = [], 0
    for a, b in merge_spans(spans):
        parts.append(text[last:a])
        parts.append(REDACTED)
        last = b
    parts.append(text[last:])
    return "".join(parts), spans
