"""Snakemake script (rule tune_select): score every candidate of one method and write the choice."""

from job_log import logged

from fedakd.config.tuning import grid, selection_record
from fedakd.diagnostics import failed
from fedakd.io import atomic_write_json
from fedakd.reporting.collect import load_metrics

with logged(snakemake):
    wildcards, params = snakemake.wildcards, snakemake.params
    runs = {(run["job"]["candidate"], run["job"]["seed"]): run for run in load_metrics(snakemake.input)}
    candidates = grid(snakemake.config, wildcards.method)
    scores = [[runs[index, seed]["history"][-1].get(params.metric) for seed in params.seeds]
              for index in range(len(candidates))]
    scores = [[float("nan") if score is None else score for score in row] for row in scores]
    failures = [[failed(runs[index, seed]["failure"]) for seed in params.seeds] for index in range(len(candidates))]
    record = selection_record(dataset=wildcards.dataset, setting=wildcards.setting, method=wildcards.method,
                              candidates=candidates, scores=scores, seeds=list(params.seeds), metric=params.metric,
                              budget=params.budget, failed=failures)
    atomic_write_json(snakemake.output[0], record)
