"""Snakemake script (rule tune_select): score every candidate of one method and write the choice."""

from job_log import logged

from fedakd.config.tuning import choose
from fedakd.io import atomic_write_json
from fedakd.reporting.collect import load_metrics

with logged(snakemake):
    wildcards = snakemake.wildcards
    runs = {(run["job"]["candidate"], run["job"]["seed"]): run for run in load_metrics(snakemake.input)}
    record = choose(snakemake.config, runs, dataset=wildcards.dataset, setting=wildcards.setting,
                    method=wildcards.method)
    atomic_write_json(snakemake.output[0], record)
