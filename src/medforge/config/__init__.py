"""Validated pydantic configs loaded from YAML with dotted command-line overrides."""

from medforge.config.base import ConfigError, MedforgeModel, load_config, parse_overrides

__all__ = ["ConfigError", "MedforgeModel", "load_config", "parse_overrides"]
