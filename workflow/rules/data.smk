# One dataset check per dataset, before any partition or training job reads it: a missing dataset
# fails once, up front, and the record ties every result to the exact files (SHA-256) used.
# A local rule: cluster compute nodes often have no internet access for a download.


localrules:
    data,


rule data:
    output:
        layout.DATA_RECORD,
    params:
        data_root=config["data_root"],
    log:
        "logs/data/{dataset}.log",
    threads: 1
    conda:
        "../envs/fedakd.yaml"
    script:
        "../scripts/data.py"
