"""The benchmark's config: load, override and validate it, and resolve it into one immutable spec per job.

- ``schema``: the JSON Schema (the home of every default) and its problems in words;
- ``loading``: YAML and ``KEY.PATH=VALUE`` overrides;
- ``checks``: everything a schema cannot check (datasets, methods, sizes, the tune block);
- ``methods``: a method entry's class and options;
- ``resolve`` and ``spec``: the specs of partitions and jobs;
- ``tuning``: the tune block's candidates and the selection rule;
- ``study``: the analysis a config declares (comparisons, metrics, ladder, convergence).

Every bad value stops here, before any work starts, with one line per problem.
"""

from fedakd.config.checks import BACKBONE_INPUT, validate_config
from fedakd.config.loading import apply_overrides, load_config
from fedakd.config.methods import method_options, validate_method_options
from fedakd.config.resolve import build_job_spec, config_digest, job_spec, partition_spec
from fedakd.config.schema import (MISSING, SCHEMA_NAME, ConfigError, Problem, format_path, load_schema, resolve_setting,
                                  schema_problems)

__all__ = [
    "BACKBONE_INPUT", "MISSING", "SCHEMA_NAME", "ConfigError", "Problem", "apply_overrides", "build_job_spec",
    "config_digest", "format_path", "job_spec", "load_config", "load_schema", "method_options", "partition_spec",
    "resolve_setting", "schema_problems", "validate_config", "validate_method_options",
]
