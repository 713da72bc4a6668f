"""Snakemake script (rule mlflow_setup): create the tracking store and experiment once, before any job."""

from job_log import logged

from fedakd.io import atomic_write_json
from fedakd.tracking import ensure_experiment

with logged(snakemake):
    tracking_uri, experiment = snakemake.params.tracking_uri, snakemake.params.experiment
    experiment_id = ensure_experiment(tracking_uri, experiment)
    atomic_write_json(snakemake.output[0],
                      {"experiment_id": experiment_id, "tracking_uri": tracking_uri, "experiment": experiment})
