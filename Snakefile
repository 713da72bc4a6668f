"""fedakd-bench: config -> partitions -> one training job per (dataset, setting, method, seed)
-> MLflow runs + metrics.json -> tables -> figures -> report (ARCHITECTURE.md, "The shape").

    snakemake --profile workflow/profiles/default                            # config/config.yaml
    snakemake --profile workflow/profiles/default --configfile config/paper.yaml
    snakemake --profile workflow/profiles/slurm --configfile config/paper.yaml
    snakemake report --allowed-rules track aggregate figures write_report mlflow_summary report --forcerun aggregate figures
                                                     # tables, figures, report from the runs on disk
"""

from snakemake.utils import min_version

min_version("8.0")


# Snakemake deep-merges a --configfile into the workflow's configfile, which would run the union of
# both grids' settings and methods; so the default is read only when no --configfile is given.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/partition.smk"
include: "workflow/rules/train.smk"


if TUNING:

    include: "workflow/rules/tune.smk"


include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"



# Here rather than in common.smk: Snakemake takes the default target only from the main Snakefile.
rule all:
    input:
        final_targets(),
