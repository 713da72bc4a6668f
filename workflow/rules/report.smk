# Figures and the Markdown report, from the runs, their partitions and the checked tables.
#
# figures is a directory() output rather than a flag file listing the figures: Snakemake empties
# the folder before the rule runs, so a figure of a setting or method dropped from the config
# cannot linger in reports/figures/ and be linked by the report, and no list has to be kept in
# step with what make_figures wrote.
#
# `snakemake report` (the report rule) alone brings everything up to date, training what is missing.
# To rebuild tables, figures and report from the runs on disk and train nothing (`make report`):
#     snakemake report --allowed-rules track aggregate figures write_report mlflow_summary report --forcerun aggregate figures
# --allowed-rules: no other rule runs, even where a changed config or script would rerun a job, so the
# metrics.json files on disk are taken as they are; a missing one stops everything with Snakemake's
# MissingInputException naming it (a table never silently drops a seed). --forcerun: without it an
# existing report.md whose inputs cannot be built is taken as up to date, and nothing is said.
# Flags rather than a second rule: a rule whose inputs are "the metrics.json that exist" would still
# hand them to the train rule, which retrains any run whose params or script changed.


localrules:
    figures,
    write_report,
    report,


rule figures:
    input:
        metrics=run_metrics(),
        tuning=tuning_choices(),
        manifests=partition_manifests(),
        comparison=f"{layout.TABLES_DIR}/comparison.csv",
    params:
        study=study(),
    output:
        report(
            directory(FIGURES),
            patterns=figure_patterns(),
            caption="../report/figure.rst",
            category="Figures: {dataset}",
            subcategory=figure_subcategory,
            labels=figure_labels,
        ),
    log:
        "logs/figures.log",
    threads: 1
    conda:
        "../envs/fedakd.yaml"
    script:
        "../scripts/figures.py"


rule write_report:
    input:
        metrics=run_metrics(),
        tuning=tuning_choices(),
        manifests=partition_manifests(),
        tables=TABLES,
        figures=FIGURES,
    output:
        report(REPORT, caption="../report/report_md.rst", category="Report"),
    params:
        study=study(),
    log:
        "logs/report.log",
    threads: 1
    conda:
        "../envs/fedakd.yaml"
    script:
        "../scripts/report.py"


rule report:
    input:
        REPORT,
        SUMMARY_RUN_FILE,


localrules:
    mlflow_summary,


rule mlflow_summary:
    """The study's tables, figures and report in one MLflow run beside the training runs (tagged
    fedakd.summary, which the aggregate step's cross-check skips)."""
    input:
        tables=TABLES,
        figures=FIGURES,
        report=REPORT,
        experiment=EXPERIMENT_FILE,
    output:
        SUMMARY_RUN_FILE,
    params:
        tracking_uri=config["tracking_uri"],
    log:
        "logs/mlflow_summary.log",
    threads: 1
    conda:
        "../envs/fedakd.yaml"
    script:
        "../scripts/mlflow_summary.py"
