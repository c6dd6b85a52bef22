"""Validated pydantic configs loaded from YAML with dotted command-line overrides."""

from medforge.config.base import ConfigError, JobConfig, MedforgeModel, OutputBase, load_config, parse_overrides

__all__ = ["ConfigError", "JobConfig", "MedforgeModel", "OutputBase", "load_config", "parse_overrides"]
