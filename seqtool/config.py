"""The names plug-ins of earlier releases imported from `seqtool.config`, kept so
that an installed plug-in goes on working. New code imports schemas from `seqtool.schema` and
builds configs with `seqtool.configure`; nothing in seqtool imports this module."""

from seqtool.configure import build_config, config_from_dict, load_config
from seqtool.schema import (
    Config,
    ModelConfig,
    TokenModelConfig,
    TrainingConfig,
    Where,
    check_split_fractions,
    check_text_files,
    option,
    parse_duration,
    parse_yaml,
)

__all__ = [
    "Config",
    "ModelConfig",
    "TokenModelConfig",
    "TrainingConfig",
    "Where",
    "build_config",
    "check_split_fractions",
    "check_text_files",
    "config_from_dict",
    "load_config",
    "option",
    "parse_duration",
    "parse_yaml",
]
