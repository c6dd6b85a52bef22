"""Config machinery shared by every job.

A job's config is a pydantic model with ``extra="forbid"``. It is loaded from YAML, then
dotted overrides from the command line are applied (``teacher.temperature=0.5``), then the
whole thing is validated at once, before any Ray resource is asked for. Every problem is
reported together, each with its field path, the bad value and a hint at the fix.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from medforge.config.registry import resolve_config_path

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


class MedforgeModel(BaseModel):
    """Base for every medforge config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_default=True, protected_namespaces=())


class ConfigError(ValueError):
    """A config could not be loaded or validated. ``problems`` lists one line per issue."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        body = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid config {source}: {len(problems)} problem(s)\n{body}")


def _coerce_scalar(text: str) -> Any:
    """Parse an override value the way YAML would (``1e-4`` -> float, ``true`` -> bool)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    # YAML 1.1 reads 1e-4 as a string; users mean a float.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into a nested dict. A token without ``=`` is an error."""
    nested: dict[str, Any] = {}
    problems = []
    for item in overrides or []:
        if "=" not in item or item.startswith("="):
            problems.append(
                f"override {item!r} is not of the form key.path=value "
                "(e.g. teacher.temperature=0.7); flags other than --config are not accepted"
            )
            continue
        key, _, raw = item.partition("=")
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                problems.append(f"override {item!r} conflicts with an earlier override of {part!r}")
                break
        else:
            node[parts[-1]] = _coerce_scalar(raw)
    if problems:
        raise ConfigError("<command line>", problems)
    return nested


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, mappings merged key by key; an empty mapping (``key={}``) replaces:
    it is how an override clears a mapping such as ``evaluate.data.reference_files``."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and value and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _fix_hint(err: dict[str, Any], model: type[BaseModel]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "remove it, or check its spelling against the documented fields"
    if kind == "missing":
        return "add it to the YAML or pass it as key=value"
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        return f"use one of {ctx['expected']}"
    return "see the field's description in docs or `medforge <job> --help`"


def format_validation_error(exc: ValidationError, model: type[BaseModel]) -> list[str]:
    """One readable line per pydantic error: field path, bad value, message, fix."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        value = err.get("input")
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        msg = err["msg"]
        if err.get("type") == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{loc} = {shown}: {msg}; fix: {_fix_hint(err, model)}")
    return lines


def load_config(model: type[M], path: str | Path | None, overrides: list[str] | None = None) -> M:
    """Load ``path`` (YAML), apply dotted ``overrides`` and validate against ``model``.

    Raises:
        ConfigError: with every problem found, never just the first.
    """
    source = str(path) if path else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        p = resolve_config_path(path)
        if not p.is_file():
            raise ConfigError(source, [f"config file {p} does not exist; pass --config with a path under configs/"])
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(source, [f"YAML syntax error: {exc}"]) from None
        if not isinstance(loaded, dict):
            raise ConfigError(source, [f"top level must be a mapping, got {type(loaded).__name__}"])
        data = loaded
    data = _deep_merge(data, parse_overrides(overrides))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc, model)) from None


def dump_config(cfg: BaseModel) -> str:
    """The resolved config as YAML, for logs and provenance."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
