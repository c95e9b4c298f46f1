"""The runtime's configuration: settings declared once (``settings``), read from every layer
(``sources``, ``flags``), bounded the same in every layer (``limits``), parsed and checked
together (``loading``), printed back (``printing``).

This is the surface the rest of the runtime uses.
"""

from container.config.entries import (
    ConfigError,
    ConfigProblem,
    Fallback,
    LoadedSettings,
    Source,
)
from container.config.flags import EPILOG, Flags, build_parser, parse_flags
from container.config.loading import (
    CONFIG_VARIABLE,
    DEFAULT_JOB_CONFIG,
    JOB_CONFIG_VARIABLE,
    load_settings,
    parse_rule_parameters,
    read_text_if_exists,
)
from container.config.printing import (
    default_value,
    example_config,
    field_docs,
    format_settings,
    setting_docs,
    yaml_inline,
)
from container.config.settings import (
    ALIASES,
    DECLARED,
    DEFAULT_METRICS_PORT,
    DEFAULT_STATUS_FILE,
    SETTING_NAMES,
    SWITCHES,
    CheckpointSettings,
    FollowSettings,
    LogSettings,
    ManagedSettings,
    MetricsSettings,
    OutputSettings,
    Settings,
    TrialSettings,
    flag_of,
)
from container.config.values import MODES, Invalid, class_names_from_lines

__all__ = [
    "ALIASES",
    "CONFIG_VARIABLE",
    "DECLARED",
    "DEFAULT_JOB_CONFIG",
    "DEFAULT_METRICS_PORT",
    "DEFAULT_STATUS_FILE",
    "EPILOG",
    "JOB_CONFIG_VARIABLE",
    "MODES",
    "SETTING_NAMES",
    "SWITCHES",
    "CheckpointSettings",
    "ConfigError",
    "ConfigProblem",
    "Fallback",
    "Flags",
    "FollowSettings",
    "Invalid",
    "LoadedSettings",
    "LogSettings",
    "ManagedSettings",
    "MetricsSettings",
    "OutputSettings",
    "Settings",
    "Source",
    "TrialSettings",
    "build_parser",
    "class_names_from_lines",
    "default_value",
    "example_config",
    "field_docs",
    "flag_of",
    "format_settings",
    "load_settings",
    "parse_flags",
    "parse_rule_parameters",
    "read_text_if_exists",
    "setting_docs",
    "yaml_inline",
]
