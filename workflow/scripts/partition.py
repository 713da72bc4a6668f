"""Snakemake script (rule partition): make and save one dataset x setting x seed partition and its heatmap."""

from pathlib import Path

from job_log import logged

from fedakd.jobs import partition_job
from fedakd.reporting.figures import partition_heatmap
from fedakd.config.spec import PartitionSpec

with logged(snakemake):
    partition = partition_job(PartitionSpec.from_dict(snakemake.params.partition),
                              data_root=snakemake.config["data_root"], out_dir=Path(snakemake.output.manifest).parent)
    partition_heatmap(partition.manifest(), snakemake.output.heatmap)
