# Fair tuning (docs/method-card.md §5), only when the config has a tune block: every candidate of every method is
# trained on every tuning seed into its own MLflow experiment and scored on the validation split; one
# selection per dataset x setting x method writes its choice (layout.TUNING_CHOICE),
# which the evaluation job of that method reads (so a changed choice reruns that method's jobs only).


def tuning_job(wildcards):
    """One tuning job's resolved spec: a candidate's options, a tuning seed, the tuning experiment."""
    from fedakd.config.tuning import tuning_spec

    return tuning_spec(
        config,
        dataset=wildcards.dataset,
        setting=wildcards.setting,
        method=wildcards.method,
        candidate=int(wildcards.candidate),
        seed=int(wildcards.seed),
    ).to_dict()


def tuning_run_paths(dataset, setting, method):
    """Every candidate x tuning seed of one dataset x setting x method."""
    from fedakd.config.tuning import grid

    return expand(
        TUNING_RUN_METRICS,
        dataset=dataset,
        setting=setting,
        method=method,
        candidate=range(len(grid(config, method))),
        seed=config["tune"]["seeds"],
    )


def tuning_runs(wildcards):
    return tuning_run_paths(wildcards.dataset, wildcards.setting, wildcards.method)


def tracked_tuning_runs():
    """The track_tuning rule's outputs: one per dataset x setting."""
    return expand(layout.TRACKED_TUNING_RUNS, dataset=config["datasets"], setting=config["settings"])


rule tune_train:
    """A candidate on a tuning seed: the train job's script, its own spec and experiment."""
    input:
        manifest=rules.partition.output.manifest,
        indices=rules.partition.output.indices,
    output:
        TUNING_RUN_METRICS,
    params:
        job=tuning_job,
    log:
        "logs/tune/{dataset}/{setting}/{method}/c{candidate}/seed{seed}.log",
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=train_runtime,
        gpu=train_gpus,
    conda:
        "../envs/fedakd.yaml"
    script:
        "../scripts/train.py"


localrules:
    tune_select,
    track_tuning,


rule tune_select:
    """The candidate with the best mean validation score over the tuning seeds (ties: the first listed)."""
    input:
        tuning_runs,
    output:
        layout.TUNING_CHOICE,
    # the script reads these from the config; as params, a change to one reruns the selection
    params:
        metric=config["tune"]["metric"],
        budget=config["tune"]["budget"],
        seeds=config["tune"]["seeds"],
    log:
        "logs/tune/{dataset}/{setting}/{method}.log",
    threads: 1
    conda:
        "../envs/fedakd.yaml"
    script:
        "../scripts/tune_select.py"


rule track_tuning:
    """Every tuning run of one dataset x setting into the tuning experiment (the track rule's script)."""
    input:
        metrics=lambda wildcards: [
            path for method in config["methods"] for path in tuning_run_paths(wildcards.dataset, wildcards.setting, method)
        ],
        experiment=EXPERIMENT_FILE,
    output:
        layout.TRACKED_TUNING_RUNS,
    params:
        tracking_uri=config["tracking_uri"],
        tracking=config["tracking"],
        experiment=experiments()[1],
    log:
        "logs/track/tuning/{dataset}/{setting}.log",
    threads: 1
    conda:
        "../envs/fedakd.yaml"
    script:
        "../scripts/track.py"
