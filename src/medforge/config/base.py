"""Config machinery shared by every job.

A job's config is a pydantic model with ``extra="forbid"``. It is loaded from YAML, then
dotted overrides from the command line are applied (``engine.temperature=0.5``), then the
whole thing is validated at once, before any Ray resource is asked for. Every problem is
reported together, each with its field path, the bad value and a hint at the fix.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medforge.config.registry import deprecated, resolve_config_path

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


class MedforgeModel(BaseModel):
    """Base for every medforge config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_default=True, protected_namespaces=())


class OutputBase(MedforgeModel):
    """Where a job writes. Every job names its folder ``output.dir``; a job's own output section
    subclasses this one, adds its fields and may narrow these two (a description, a path check)."""

    dir: str = Field(description="The job's output folder. A local path, a shared mount, or (where the job "
                                 "says so) a URI (s3://, gs://).")
    overwrite: bool = Field(False, description="Delete what an earlier run left in dir before this one starts; "
                                               "false: resume it (or add to it).")


def _pop_dotted(data: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    """Remove ``a.b.c`` from nested ``data`` (parents left empty go too); ``(found, value)``."""
    parts = dotted.split(".")
    trail = [data]
    for part in parts[:-1]:
        node = trail[-1].get(part)
        if not isinstance(node, dict):
            return False, None
        trail.append(node)
    if parts[-1] not in trail[-1]:
        return False, None
    value = trail[-1].pop(parts[-1])
    for depth in range(len(parts) - 1, 0, -1):
        if trail[depth]:
            break
        trail[depth - 1].pop(parts[depth - 1])
    return True, value


def get_dotted(data: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    """``(found, value)`` of ``a.b.c`` in nested ``data``."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in nested ``data``, making the missing parents."""
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _blocked(data: dict[str, Any], dotted: str) -> bool:
    """A parent on the way to ``a.b.c`` exists and is not a mapping (``a.b.c`` cannot be set)."""
    node: Any = data
    for part in dotted.split(".")[:-1]:
        if part not in node:
            return False
        node = node[part]
        if not isinstance(node, dict):
            return True
    return False


def deep_copy(value: Any) -> Any:
    """A copy of nested dicts and lists (the leaves are shared)."""
    if isinstance(value, dict):
        return {k: deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [deep_copy(v) for v in value]
    return value


def move_renamed_keys(data: dict[str, Any], renamed: dict[str, str], job: str, prefix: str = "") -> dict[str, Any]:
    """``data`` with every old dotted key of ``renamed`` moved to its new key, each logged as deprecated.

    ``prefix``: where ``data`` sits in a bigger config (``generate.``), for the messages.

    Raises:
        ValueError: when an old key and its new key are both given (which one is meant is not clear).
    """
    if not renamed or not isinstance(data, dict):
        return data
    data = deep_copy(data)
    problems = []
    for old, new in renamed.items():
        if not get_dotted(data, old)[0]:
            continue
        if get_dotted(data, new)[0] or _blocked(data, new):
            problems.append(f"{prefix}{old} and {prefix}{new} are both set: {prefix}{old} is the old name of "
                            f"{prefix}{new}; fix: keep {prefix}{new} only")
            continue
        _, value = _pop_dotted(data, old)
        set_dotted(data, new, value)
        logger.warning("%s: %s", job, deprecated(f"config key {prefix}{old}", f"{prefix}{new}"))
    if problems:
        raise ValueError("; ".join(problems))
    return data


class JobConfig(MedforgeModel):
    """Base of every job's config: where Ray runs and where the job writes, declared once.

    A subclass may narrow a field (another default, a tighter bound) by declaring it again.
    ``renamed_keys`` maps old dotted keys to new ones: a config (file, override or dict) that
    still uses an old key keeps working for one release, with a warning that names the new key.
    """

    renamed_keys: ClassVar[dict[str, str]] = {}

    ray_address: str | None = Field(
        None, description="Ray cluster to join; empty: join RAY_ADDRESS if set (ray job submit) or start a local one.")
    ray_num_cpus: int | None = Field(
        None, ge=1, description="Logical CPUs of a locally started Ray (oversubscribing a laptop is fine); "
                                "null: max(4, cores).")
    ray_object_store_mib: int | None = Field(
        None, ge=80, description="Object store of a locally started Ray (ignored when joining one); "
                                 "null: Ray's default, 30% of RAM.")
    output: OutputBase = Field(description="Where the job writes.")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        return cls.move_renamed_keys(data) if isinstance(data, dict) else data

    @classmethod
    def move_renamed_keys(cls, data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        """``data`` (a raw config mapping, or part of one) with this job's old keys moved to their new names."""
        return move_renamed_keys(data, cls.renamed_keys, cls.__name__, prefix)


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
                "(e.g. engine.temperature=0.7); flags other than --config are not accepted"
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


def _deep_merge(base: dict[str, Any], extra: dict[str, Any], *, kind_replaces: bool = False) -> dict[str, Any]:
    """``extra`` over ``base``, mappings merged key by key; an empty mapping (``key={}``) replaces:
    it is how an override clears a mapping such as ``evaluate.data.reference_files``.

    ``kind_replaces`` (command-line overrides): a mapping whose ``kind`` differs from the one it
    lands on replaces it, so ``engine={kind: scripted}`` over a vLLM engine section does not drag
    the vLLM-only keys (``max_model_len``, ...) into the scripted one."""
    out = dict(base)
    for key, value in extra.items():
        old = out.get(key)
        switched = (kind_replaces and isinstance(value, dict) and isinstance(old, dict)
                    and "kind" in value and value["kind"] != old.get("kind"))
        if isinstance(value, dict) and value and isinstance(old, dict) and not switched:
            out[key] = _deep_merge(old, value, kind_replaces=kind_replaces)
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
    extra = parse_overrides(overrides)
    try:
        if issubclass(model, JobConfig):
            # old keys are moved in the file and in the overrides apart, so that an old override
            # (output_dir=...) still applies over a file written with the new key
            data = model.move_renamed_keys(data)
            extra = model.move_renamed_keys(extra)
        data = _deep_merge(data, extra, kind_replaces=True)
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc, model)) from None
    except ValueError as exc:
        raise ConfigError(source, [str(exc)]) from None


def dump_config(cfg: BaseModel) -> str:
    """The resolved config as YAML, for logs and provenance."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
