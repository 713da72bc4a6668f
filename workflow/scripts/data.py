"""Snakemake script (rule data): check, or download, one dataset and record its files' SHA-256."""

from job_log import logged

from fedakd.data import ensure_dataset
from fedakd.io import atomic_write_json

with logged(snakemake):
    summary = ensure_dataset(snakemake.wildcards.dataset, snakemake.params.data_root, download=True)
    atomic_write_json(snakemake.output[0], summary)
