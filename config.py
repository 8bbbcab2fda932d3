"""The run configuration under its design name, so that `from config import GatedBertConfig` works from the
repository root. The code is `experiment/config.py` (installed as `experiment.config`)."""

from experiment.config import ConfigError, GatedBertConfig, build_parser, resolve_config

__all__ = ["ConfigError", "GatedBertConfig", "build_parser", "resolve_config"]
