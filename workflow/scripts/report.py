"""Snakemake script (rule write_report): write reports/report.md from the runs, the tables and the figures."""

from pathlib import Path

from job_log import logged

from fedakd.io import read_json
from fedakd.reporting.collect import load_metrics, runs_frame
from fedakd.reporting.report import write_report
from fedakd.reporting.tables import build_tables

with logged(snakemake):
    runs = load_metrics(snakemake.input.metrics)
    manifests = [read_json(path, "partition manifest") for path in snakemake.input.manifests]
    # Recomputed from the same runs by the same functions as the table files (the aggregate rule, which
    # this one waits for, has checked them against MLflow); no CSV round trip to alter types.
    frame = runs_frame(runs)
    tables = build_tables(frame, baseline=snakemake.params.baseline)
    figures = sorted(path for path in Path(snakemake.input.figures).iterdir() if path.suffix in (".png", ".pdf"))
    write_report(runs, tables, figures, snakemake.output[0], snakemake.config, manifests)
