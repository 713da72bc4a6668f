"""Snakemake script (rule aggregate): check every run against MLflow (a published bundle's, by its manifest
instead), then write the study's tables."""

from pathlib import Path

from job_log import logged

from fedakd.config.study import Study
from fedakd.io import read_json
from fedakd.reporting.collect import crosscheck_mlflow, load_metrics
from fedakd.reporting.tables import study_tables, write_tables

with logged(snakemake):
    runs = load_metrics(snakemake.input.metrics)
    if not snakemake.params.published:  # a published bundle's runs were checked by its SHA-256 manifest
        crosscheck_mlflow(runs, snakemake.params.tracking_uri, snakemake.params.experiment)
    tuning = [read_json(path, "tuning choice") for path in snakemake.input.tuning]
    study, tables = study_tables(runs, tuning, Study.from_dict(snakemake.params.study))
    write_tables(tables, Path(snakemake.output[0]).parent, study)
