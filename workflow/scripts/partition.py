"""Snakemake script (rule partition): make and save one dataset x setting x seed partition and its heatmap."""

from pathlib import Path

from job_log import logged

from fedakd.config import job_config
from fedakd.jobs import partition_job

with logged(snakemake):
    config, wildcards = snakemake.config, snakemake.wildcards
    # Any method will do: the partition depends only on snakemake.params.partition.
    job = job_config(config, dataset=wildcards.dataset, setting=wildcards.setting,
                     method=next(iter(config["methods"])), seed=int(wildcards.seed))
    partition_job(job, out_dir=Path(snakemake.output.manifest).parent)
