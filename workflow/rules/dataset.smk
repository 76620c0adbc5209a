rule split:
    input:
        extracts=expand("data/extract/{db}", db=DATABASES),
        code=["bloodcell/split.py"],
    output:
        directory("data/split"),
    log:
        "logs/split.log",
    benchmark:
        "logs/benchmarks/split.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
    params:
        seed=config["seed"],
        shares=config["split"],
    shell:
        "bloodcell --log {log} split {input.extracts} --out {output} --seed {params.seed}"
        " --train {params.shares[train]} --valid {params.shares[valid]}"
        " --test {params.shares[test]}"
