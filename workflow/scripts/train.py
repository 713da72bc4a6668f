"""Snakemake script (rules train and tune_train): train one job into its run folder; an evaluation job of a
tuned study runs the options its method's tuning chose. The MLflow run is logged by the track rule."""

from pathlib import Path

from job_log import logged

from fedakd.io import read_json
from fedakd.jobs import train_job
from fedakd.config.spec import JobSpec
from fedakd.config.tuning import with_options

with logged(snakemake):
    job = JobSpec.from_dict(snakemake.params.job)
    if snakemake.input.get("tuning"):
        job = with_options(job, read_json(snakemake.input.tuning, "tuning choice")["chosen"]["options"])
    train_job(job, out_dir=Path(snakemake.output[0]).parent, partition_dir=Path(snakemake.input.manifest).parent,
              threads=snakemake.threads)
