"""Snakemake script (rule train): train one dataset x setting x method x seed job into its run folder."""

from pathlib import Path

from job_log import logged

from fedakd.io import read_json
from fedakd.jobs import train_job
from fedakd.spec import JobSpec

with logged(snakemake):
    experiment = read_json(snakemake.input.experiment, "MLflow experiment file")
    train_job(JobSpec.from_dict(snakemake.params.job), out_dir=Path(snakemake.output[0]).parent,
              partition_dir=Path(snakemake.input.manifest).parent,
              experiment_id=experiment["experiment_id"], threads=snakemake.threads)
