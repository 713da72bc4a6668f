"""Snakemake script (rule mlflow_setup): create the tracking store and the experiments once, before any job."""

from job_log import logged

from fedakd.io import atomic_write_json
from fedakd.tracking import ensure_experiment

with logged(snakemake):
    tracking_uri, names = snakemake.params.tracking_uri, snakemake.params.experiments
    ids = {name: ensure_experiment(tracking_uri, name, snakemake.params.tracking) for name in names}
    atomic_write_json(snakemake.output[0], {"experiment_id": ids[names[0]], "experiment": names[0], "ids": ids,
                                            "tracking_uri": tracking_uri})
