# The MLflow experiment, created once, then one training job per dataset x setting x method x seed, and one
# tracking job per dataset x setting that logs its finished runs to MLflow.
#
# Why a separate tracking job: importing MLflow and opening its store cost about 3 CPU-seconds, more than
# the rounds of a small job; a training job imports only what it trains with, and the track rule pays that
# cost once for all the runs of a setting (and draws their figures with one matplotlib import). A lost
# tracking server stops only the track rule, with one line; the trained results are on disk, and a rerun
# logs exactly what the runs lack (fedakd.tracking).
#
# threads: 1 per job, so the default profile's 2 cores run 2 jobs side by side, which keeps both cores
# busy through a job's serial parts (start-up, evaluation, logging). More cores per job: a profile's
# `set-threads: {train: 4}` or `--set-threads train=4` (the script passes it to torch.set_num_threads).
# Resources are derived from the config (common.smk): mem_mb and runtime (minutes; a cluster's
# wall-time) per dataset, gpu=1 when the config's device is cuda (or auto and torch sees CUDA).
# The local executor limits only what `--resources` names. Each job asks gpu=1, so the limit is the
# number of jobs sharing the GPUs: `--resources gpu=4` lets 4 small jobs share one GPU (a cnn job
# uses a few hundred MB of device memory), `--resources gpu=1` gives each job a GPU of its own.


localrules:
    mlflow_setup,
    track,


rule mlflow_setup:
    """The only writer that creates the tracking store and the experiment: several training jobs
    creating a new SQLite store at once would corrupt it."""
    output:
        EXPERIMENT_FILE,
    params:
        tracking_uri=config["tracking_uri"],
        tracking=config["tracking"],
        experiments=experiments(),
    log:
        "logs/mlflow_setup.log",
    threads: 1
    conda:
        "../envs/fedakd.yaml"
    script:
        "../scripts/mlflow_setup.py"


rule train:
    """A killed job resumes from its last checkpointed round when rerun; a finished one is not rerun.
    With a tune block, the job runs the options its method's tuning chose."""
    input:
        manifest=family_partition("manifest"),
        indices=family_partition("indices"),
        tuning=lambda wildcards: layout.TUNING_CHOICE.format(**wildcards) if TUNING else [],
    output:
        RUN_METRICS,
    params:
        job=train_job,
    log:
        "logs/train/{dataset}/{setting}/{method}/seed{seed}.log",
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=train_runtime,
        gpu=train_gpus,
    conda:
        "../envs/fedakd.yaml"
    script:
        "../scripts/train.py"


rule track:
    """The finished runs of one dataset x setting as FINISHED MLflow runs, with their figures; a run already
    logged is left alone, one that an earlier attempt left incomplete is completed."""
    input:
        metrics=lambda wildcards: per_setting(
            rules.train.output[0], [wildcards.setting], dataset=wildcards.dataset, method=config["methods"]
        ),
        experiment=EXPERIMENT_FILE,
    output:
        layout.TRACKED_RUNS,
    params:
        tracking_uri=config["tracking_uri"],
        tracking=config["tracking"],
        experiment=config["experiment"],
    log:
        "logs/track/{dataset}/{setting}.log",
    threads: 1
    conda:
        "../envs/fedakd.yaml"
    script:
        "../scripts/track.py"
