"""Snakemake script (rule write_report): write reports/report.md from the runs, the tables and the figures."""

import dataclasses
from pathlib import Path

from job_log import logged

from fedakd.io import read_json
from fedakd.reporting.collect import load_metrics, runs_frame
from fedakd.reporting.report import write_report
from fedakd.reporting.tables import Study, build_tables, tuned_options

with logged(snakemake):
    runs = load_metrics(snakemake.input.metrics)
    manifests = [read_json(path, "partition manifest") for path in snakemake.input.manifests]
    tuning = [read_json(path, "tuning choice") for path in snakemake.input.tuning]
    study = Study.from_dict(snakemake.params.study)
    study = dataclasses.replace(study, tuned=tuned_options([r for r in tuning if len(r["candidates"]) > 1]))
    # Recomputed from the same runs by the same functions as the table files (the aggregate rule, which
    # this one waits for, has checked them against MLflow); no CSV round trip to alter types.
    tables = build_tables(runs_frame(runs), study, tuning)
    figures = sorted(path for path in Path(snakemake.input.figures).iterdir() if path.suffix in (".png", ".pdf"))
    write_report(runs, tables, figures, snakemake.output[0], snakemake.config, manifests, study)
