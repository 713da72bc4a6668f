"""Snakemake script (rule mlflow_summary): the study's tables, figures and report as one MLflow run."""

from pathlib import Path

from job_log import logged

from fedakd.io import atomic_write_json, read_json
from fedakd.tracking import log_study_summary

with logged(snakemake):
    experiment = read_json(snakemake.input.experiment, "MLflow experiment file")
    figures = sorted(p for p in Path(snakemake.input.figures).iterdir() if p.suffix == ".png")
    run_id = log_study_summary(snakemake.params.tracking_uri, experiment["experiment_id"],
                               {"tables": [Path(p) for p in snakemake.input.tables], "figures": figures,
                                "report": [Path(snakemake.input.report)]})
    atomic_write_json(snakemake.output[0], {"summary_run_id": run_id, "experiment_id": experiment["experiment_id"]})
