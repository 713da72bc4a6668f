"""Snakemake script (rule aggregate): check every run against MLflow, then write the study's tables."""

import dataclasses
from pathlib import Path

from job_log import logged

from fedakd.io import read_json
from fedakd.reporting.collect import crosscheck_mlflow, load_metrics, runs_frame
from fedakd.reporting.tables import Study, build_tables, tuned_options, write_tables

with logged(snakemake):
    runs = load_metrics(snakemake.input.metrics)
    crosscheck_mlflow(runs, snakemake.params.tracking_uri, snakemake.params.experiment)
    tuning = [read_json(path, "tuning choice") for path in snakemake.input.tuning]
    study = Study.from_dict(snakemake.params.study)
    study = dataclasses.replace(study, tuned=tuned_options([r for r in tuning if len(r["candidates"]) > 1]))
    write_tables(build_tables(runs_frame(runs), study, tuning), Path(snakemake.output[0]).parent, study)
