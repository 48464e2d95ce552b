"""Former home of the app paths, user config, catalogue, name resolution and listing.

It exists only for the callers still being moved: each name now lives in a
module with one job (app_paths, user_config, toml_file, catalogue, model_names,
models_list). Import from those; delete this file once nothing imports it.
"""

from __future__ import annotations

from .app_paths import app_dir, config_path, models_dir, user_cache_dir
from .catalogue import ModelEntry, find_model, load_models, models_toml_path, read_digest, url_file_name
from .model_names import DEMO_ALIASES, DEMO_DESCRIPTION, DEMO_NAME, builtin_default_model, resolve_model
from .models_list import list_models, show_models
from .toml_file import ConfigError
from .user_config import RUN_OPTION_TYPES, load_user_config, run_defaults

__all__ = [
    "ConfigError",
    "DEMO_ALIASES",
    "DEMO_DESCRIPTION",
    "DEMO_NAME",
    "ModelEntry",
    "RUN_OPTION_TYPES",
    "app_dir",
    "builtin_default_model",
    "config_path",
    "find_model",
    "list_models",
    "load_models",
    "load_user_config",
    "models_dir",
    "models_toml_path",
    "read_digest",
    "resolve_model",
    "run_defaults",
    "show_models",
    "url_file_name",
    "user_cache_dir",
]
