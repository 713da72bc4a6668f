"""Snakemake script (rule write_report): write reports/report.md from the runs, the tables and the figures."""

from pathlib import Path

from job_log import logged

from fedakd.config.study import Study
from fedakd.io import read_json
from fedakd.reporting.collect import load_metrics
from fedakd.reporting.report import write_report
from fedakd.reporting.tables import study_tables

with logged(snakemake):
    runs = load_metrics(snakemake.input.metrics)
    manifests = [read_json(path, "partition manifest") for path in snakemake.input.manifests]
    tuning = [read_json(path, "tuning choice") for path in snakemake.input.tuning]
    # Recomputed from the same runs by the same function as the table files (the aggregate rule, which this
    # one waits for, has checked them against MLflow); no CSV round trip to alter types.
    study, tables = study_tables(runs, tuning, Study.from_dict(snakemake.params.study))
    figures = sorted(path for path in Path(snakemake.input.figures).iterdir() if path.suffix in (".png", ".pdf"))
    write_report(runs, tables, figures, snakemake.output[0], snakemake.config, manifests, study)
