"""Snakemake script (rule figures): draw every figure of the report into reports/figures/."""

from job_log import logged

from fedakd.io import read_json
from fedakd.reporting.collect import load_metrics
from fedakd.reporting.figures import make_figures
from fedakd.config.study import Study

with logged(snakemake):
    import pandas as pd

    runs = load_metrics(snakemake.input.metrics)
    manifests = [read_json(path, "partition manifest") for path in snakemake.input.manifests]
    tuning = [read_json(path, "tuning choice") for path in snakemake.input.tuning]
    comparison = pd.read_csv(snakemake.input.comparison)
    make_figures(runs, manifests, snakemake.output[0], tuning, comparison, Study.from_dict(snakemake.params.study))
