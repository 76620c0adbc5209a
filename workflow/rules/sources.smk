# The source databases: the demo databases drawn by demo_sources, and one extract_<name> rule
# per database of sources.databases. A rule is defined only where the preset's DAG has its
# stage (bloodcell/common/dag_shape.py, which dvc.yaml is rendered from), so Snakemake's rules
# and dvc.yaml's stages stay the same list under every preset.


if SHAPE.draws_demo_sources(config):

    rule demo_sources:
        input:
            code=code_deps("bloodcell.sources.demo.databases"),
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
            lisc_per_class=config["demo"]["lisc_per_class"],
            lisc_mixt=config["demo"]["lisc_mixt"],
            iumc_per_class=config["demo"]["iumc_per_class"],
            mamic_fields=config["demo"]["mamic_fields"],
            kaggle_per_class=config["demo"]["kaggle_per_class"],
        shell:
            "bloodcell --log {log} demo-sources {params.outdir} --seed {params.seed}"
            " --lisc-per-class {params.lisc_per_class} --lisc-mixt {params.lisc_mixt}"
            " --iumc-per-class {params.iumc_per_class}"
            " --mamic-fields {params.mamic_fields}"
            " --kaggle-per-class {params.kaggle_per_class}"


if "lisc" in DATABASES:

    rule extract_lisc:
        input:
            db=source_dir("lisc"),
            code=code_deps("bloodcell.sources.lisc"),
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
            scale=extract_param("lisc", "scale"),
            pad=extract_param("lisc", "pad"),
            min_area=extract_param("lisc", "min_area"),
            multi_cell=extract_param("lisc", "multi_cell"),
        shell:
            "bloodcell --log {log} extract-lisc {input.db} {output} --scale {params.scale}"
            " --pad {params.pad} --min-area {params.min_area}"
            " --multi-cell {params.multi_cell}"


if "iumc" in DATABASES:

    rule extract_iumc:
        input:
            db=source_dir("iumc"),
            code=code_deps("bloodcell.sources.iumc"),
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
            scale=extract_param("iumc", "scale"),
            pad=extract_param("iumc", "pad"),
            min_area=extract_param("iumc", "min_area"),
        shell:
            "bloodcell --log {log} extract-iumc {input.db} {output} --scale {params.scale}"
            " --pad {params.pad} --min-area {params.min_area}"


if "mamic" in DATABASES:

    rule extract_mamic:
        input:
            db=source_dir("mamic"),
            crops=versioned_input(config["sources"].get("mamic_crops", "")),
            code=code_deps("bloodcell.sources.mamic"),
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
            scale=extract_param("mamic", "scale"),
            pad=extract_param("mamic", "pad"),
            min_area=extract_param("mamic", "min_area"),
        shell:
            "bloodcell --log {log} extract-mamic {input.db} {params.crops} {output}"
            " --scale {params.scale} --pad {params.pad} --min-area {params.min_area}"


if "kaggle" in DATABASES:

    rule extract_kaggle:
        input:
            db=source_dir("kaggle"),
            code=code_deps("bloodcell.sources.kaggle"),
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
            scale=extract_param("kaggle", "scale"),
            pad=extract_param("kaggle", "pad"),
            min_area=extract_param("kaggle", "min_area"),
            threshold=extract_param("kaggle", "threshold"),
        shell:
            "bloodcell --log {log} extract-kaggle {input.db} {output} --scale {params.scale}"
            " --pad {params.pad} --min-area {params.min_area}"
            " --threshold {params.threshold}"
