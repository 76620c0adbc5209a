rule demo_sources:
    input:
        code=["bloodcell/sources/demo/databases.py", "bloodcell/sources/demo/cells.py"],
    output:
        directory("raw/demo/lisc"),
        directory("raw/demo/iumc"),
        directory("raw/demo/mamic"),
        directory("raw/demo/kaggle"),
    log:
        "logs/demo_sources.log",
    benchmark:
        "logs/benchmarks/demo_sources.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=2000,
    params:
        outdir=lambda wildcards, output: os.path.dirname(output[0]),
        seed=config["seed"],
        demo=config["demo"],
    shell:
        "bloodcell --log {log} demo-sources {params.outdir} --seed {params.seed}"
        " --lisc-per-class {params.demo[lisc_per_class]} --lisc-mixt {params.demo[lisc_mixt]}"
        " --iumc-per-class {params.demo[iumc_per_class]}"
        " --mamic-fields {params.demo[mamic_fields]}"
        " --kaggle-per-class {params.demo[kaggle_per_class]}"


rule extract_lisc:
    input:
        db=source_dir("lisc"),
        code=EXTRACT_CODE + ["bloodcell/sources/lisc.py"],
    output:
        directory("data/extract/lisc"),
    log:
        "logs/extract_lisc.log",
    benchmark:
        "logs/benchmarks/extract_lisc.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=2000,
    params:
        p=extract_params("lisc"),
    shell:
        "bloodcell --log {log} extract-lisc {input.db} {output} --scale {params.p[scale]}"
        " --pad {params.p[pad]} --min-area {params.p[min_area]}"
        " --multi-cell {params.p[multi_cell]}"


rule extract_iumc:
    input:
        db=source_dir("iumc"),
        code=EXTRACT_CODE + ["bloodcell/sources/iumc.py"],
    output:
        directory("data/extract/iumc"),
    log:
        "logs/extract_iumc.log",
    benchmark:
        "logs/benchmarks/extract_iumc.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=2000,
    params:
        p=extract_params("iumc"),
    shell:
        "bloodcell --log {log} extract-iumc {input.db} {output} --scale {params.p[scale]}"
        " --pad {params.p[pad]} --min-area {params.p[min_area]}"


rule extract_mamic:
    input:
        db=source_dir("mamic"),
        crops=versioned_input(config["sources"].get("mamic_crops", "")),
        code=EXTRACT_CODE + ["bloodcell/sources/mamic.py"],
    output:
        directory("data/extract/mamic"),
    log:
        "logs/extract_mamic.log",
    benchmark:
        "logs/benchmarks/extract_mamic.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=2000,
    params:
        crops=config["sources"].get("mamic_crops", ""),
        p=extract_params("mamic"),
    shell:
        "bloodcell --log {log} extract-mamic {input.db} {params.crops} {output}"
        " --scale {params.p[scale]} --pad {params.p[pad]} --min-area {params.p[min_area]}"


rule extract_kaggle:
    input:
        db=source_dir("kaggle"),
        code=EXTRACT_CODE + ["bloodcell/sources/kaggle.py"],
    output:
        directory("data/extract/kaggle"),
    log:
        "logs/extract_kaggle.log",
    benchmark:
        "logs/benchmarks/extract_kaggle.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=4000,
    params:
        p=extract_params("kaggle"),
    shell:
        "bloodcell --log {log} extract-kaggle {input.db} {output} --scale {params.p[scale]}"
        " --pad {params.p[pad]} --min-area {params.p[min_area]}"
        " --threshold {params.p[threshold]}"
