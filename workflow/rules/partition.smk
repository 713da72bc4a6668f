# One partition per dataset x setting x seed, shared by every method trained on it (the train job
# checks its SHA-256 and parameters).


rule partition:
    input:
        rules.data.output,
    output:
        **PARTITION_FILES,
    params:
        partition=partition_config,  # the rerun trigger: only what makes the partition
    log:
        "logs/partition/{dataset}/{setting}/seed{seed}.log",
    threads: 1
    conda:
        "../envs/fedakd.yaml"
    script:
        "../scripts/partition.py"
