# One partition per dataset x setting x seed, shared by every method trained on it (the train job
# checks its SHA-256 and parameters).


rule partition:
    input:
        "results/data/{dataset}.json",
    output:
        manifest="results/partitions/{dataset}/{setting}/seed{seed}/manifest.json",
        indices="results/partitions/{dataset}/{setting}/seed{seed}/indices.npz",
        heatmap="results/partitions/{dataset}/{setting}/seed{seed}/heatmap.png",
    params:
        partition=partition_config,  # the rerun trigger: only what makes the partition
    log:
        "logs/partition/{dataset}/{setting}/seed{seed}.log",
    threads: 1
    conda:
        "../envs/fedakd.yaml"
    script:
        "../scripts/partition.py"
