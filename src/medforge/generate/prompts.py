"""Jinja prompt templates shipped next to the code, with a stable hash for provenance."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import resources

import jinja2

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("medforge.generate", "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=False,
    autoescape=False,
)
# JSON as a model should write it: keys in the given order, no HTML escaping, no free whitespace.
_ENV.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@lru_cache(maxsize=None)
def template_source(name: str) -> str:
    return (resources.files("medforge.generate") / "templates" / name).read_text()


@lru_cache(maxsize=None)
def template_hash(name: str) -> str:
    """First 12 hex chars of the template's sha256: recorded in every output row."""
    return hashlib.sha256(template_source(name).encode()).hexdigest()[:12]


def render(name: str, **context) -> str:
    return _ENV.get_template(name).render(**context).strip()
