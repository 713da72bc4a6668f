"""Snakemake script (rules track and track_tuning): log one dataset x setting's finished runs to MLflow, in one
process (one MLflow import, one matplotlib import for all their figures), and list their run ids."""

from pathlib import Path

from job_log import logged

from fedakd.io import atomic_write_json, read_json
from fedakd.track import track_job
from fedakd.tracking import connect

with logged(snakemake):
    tracking_uri, experiment = snakemake.params.tracking_uri, snakemake.params.experiment
    connect(tracking_uri, snakemake.params.tracking)
    experiment_id = read_json(snakemake.input.experiment, "MLflow experiment file")["ids"][experiment]
    runs = {}  # run folder -> MLflow run id
    for path in snakemake.input.metrics:
        folder = str(Path(path).parent)
        runs[folder] = track_job(folder, tracking_uri=tracking_uri, experiment_id=experiment_id)
    atomic_write_json(snakemake.output[0], {"tracking_uri": tracking_uri, "experiment": experiment,
                                            "experiment_id": experiment_id, "runs": runs})
