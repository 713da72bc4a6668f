# Every run's metrics.json, checked against MLflow (exactly one FINISHED run per job), into the study's
# tables: summary, declared comparisons (Holm-adjusted paired tests), ablation ladder and cost.


localrules:
    aggregate,


rule aggregate:
    input:
        metrics=run_metrics(),
        tracked=[] if PUBLISHED else tracked_runs(),
        tuning=tuning_choices(),
        experiment=[] if PUBLISHED else EXPERIMENT_FILE,
    output:
        table_outputs(),
    params:
        tracking_uri=config["tracking_uri"],
        experiment=config["experiment"],
        study=study(),
        published=bool(PUBLISHED),
    log:
        "logs/aggregate.log",
    threads: 1
    conda:
        "../envs/fedakd.yaml"
    script:
        "../scripts/aggregate.py"
