"""Snakemake script (rule aggregate): check every run against MLflow, then write the summary and comparison tables."""

from pathlib import Path

from job_log import logged

from fedakd.reporting.collect import crosscheck_mlflow, load_metrics, runs_frame
from fedakd.reporting.tables import build_tables, write_tables

with logged(snakemake):
    runs = load_metrics(snakemake.input.metrics)
    crosscheck_mlflow(runs, snakemake.params.tracking_uri, snakemake.params.experiment)
    frame = runs_frame(runs)
    tables = build_tables(frame, baseline=snakemake.params.baseline)
    write_tables(tables, Path(snakemake.output[0]).parent)
