# Every run's metrics.json, checked against MLflow (exactly one FINISHED run per job), into the
# summary (mean, std, 95 % t-interval over seeds) and comparison (paired tests against fedavg) tables.


localrules:
    aggregate,


rule aggregate:
    input:
        metrics=run_metrics(),
        experiment=EXPERIMENT_FILE,
    output:
        TABLES,
    params:
        tracking_uri=config["tracking_uri"],
        experiment=config["experiment"],
        baseline=BASELINE,
    log:
        "logs/aggregate.log",
    threads: 1
    script:
        "../scripts/aggregate.py"
