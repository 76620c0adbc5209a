LINEAGE_SHARD = next(s for s in SHARDS if s.startswith("test-"))


rule split:
    input:
        extracts=expand("data/extract/{db}", db=DATABASES),
        code=["bloodcell/dataset/split.py"],
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


rule backgrounds:
    input:
        split="data/split",
        extracts=expand("data/extract/{db}", db=RBC_DATABASES),
        code=DATASET_CODE,
    output:
        report(
            directory("data/backgrounds/{split}"),
            patterns=["contact_{name}.png"],
            caption="../report/backgrounds.rst",
            category="Backgrounds",
            subcategory="{split}",
        ),
    log:
        "logs/backgrounds/{split}.log",
    benchmark:
        "logs/benchmarks/backgrounds/{split}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
    params:
        seed=config["seed"],
        per_kind=lambda wildcards: config["backgrounds"]["per_kind"][wildcards.split],
        bg=config["backgrounds"],
    shell:
        "bloodcell --log {log} backgrounds {wildcards.split}"
        " --split-table {input.split}/split.csv --extracts {input.extracts}"
        " --out {output} --seed {params.seed} --per-kind {params.per_kind}"
        " --size {params.bg[size]} --rbc-count {params.bg[rbc_min]} {params.bg[rbc_max]}"
        " --max-iou {params.bg[max_iou]} --mixed-infected {params.bg[mixed_infected]}"


rule synth:
    input:
        split="data/split",
        extracts=expand("data/extract/{db}", db=DATABASES),
        backgrounds=shard_backgrounds,
        code=DATASET_CODE + ["bloodcell/dataset/synth.py", "bloodcell/dataset/shards.py"],
    output:
        report(
            directory("data/synth/{shard}"),
            patterns=["contact_{kind}.png"],
            caption="../report/contact_sheet.rst",
            category="Synthetic data",
            subcategory="{shard}",
        ),
    log:
        "logs/synth/{shard}.log",
    benchmark:
        "logs/benchmarks/synth/{shard}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=3000,
    params:
        seed=config["seed"],
        shard=shard_params,
        s=config["synth"],
        bg_size=config["backgrounds"]["size"],
    shell:
        "bloodcell --log {log} synth {wildcards.shard}"
        " --split-table {input.split}/split.csv --extracts {input.extracts}"
        " --backgrounds {input.backgrounds} --out {output} --seed {params.seed}"
        " --images {params.shard[images]} --mix {params.s[mix][background]}"
        " {params.s[mix][single]} {params.s[mix][double]} {params.s[mix][triple]}"
        " --partial-share {params.s[partial_share]} --corner-share {params.s[corner_share]}"
        " --min-visible {params.s[min_visible]} --bg-size {params.bg_size}"


rule slides:
    input:
        split="data/split",
        extracts=expand("data/extract/{db}", db=DATABASES),
        code=DATASET_CODE + ["bloodcell/dataset/synth.py", "bloodcell/dataset/synthetic_slides.py"],
    output:
        report(
            directory("data/slides"),
            patterns=["contact_{kind}.png"],
            caption="../report/contact_sheet.rst",
            category="Whole slides",
        ),
    log:
        "logs/slides.log",
    benchmark:
        "logs/benchmarks/slides.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
    params:
        seed=config["seed"],
        sl=config["slides"],
        s=config["synth"],
        bg=config["backgrounds"],
    shell:
        "bloodcell --log {log} slides --split-table {input.split}/split.csv"
        " --extracts {input.extracts} --out {output} --seed {params.seed}"
        " --count {params.sl[count]} --size {params.sl[size]}"
        " --extra-sizes {params.sl[extra_sizes]}"
        " --wbc {params.sl[wbc][0]} {params.sl[wbc][1]}"
        " --thrombocytes {params.sl[thrombocytes][0]} {params.sl[thrombocytes][1]}"
        " --clumps {params.sl[clumps][0]} {params.sl[clumps][1]}"
        " --seam-share {params.sl[seam_share]} --min-visible {params.s[min_visible]}"
        " --rbc-count {params.bg[rbc_min]} {params.bg[rbc_max]}"
        " --max-iou {params.bg[max_iou]} --mixed-infected {params.bg[mixed_infected]}"


rule dataset_stats:
    input:
        shard="data/synth/{shard}",
        code=["bloodcell/dataset/stats.py"],
    output:
        metrics="metrics/dataset/{shard}.json",
        plot="plots/dataset/{shard}.csv",
    log:
        "logs/dataset_stats/{shard}.log",
    benchmark:
        "logs/benchmarks/dataset_stats/{shard}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
    shell:
        "bloodcell --log {log} dataset-stats {input.shard}"
        " --metrics {output.metrics} --plot {output.plot}"


rule data_report:
    input:
        extracts=expand("data/extract/{db}", db=DATABASES),
        split="data/split",
        shard=f"data/synth/{LINEAGE_SHARD}",
        code=[
            "bloodcell/provenance/data_report.py",
            "bloodcell/provenance/lineage.py",
            "bloodcell/common/contact_sheet.py",
            "bloodcell/common/draw.py",
        ],
    output:
        report(
            directory("reports/data"),
            patterns=["{name}.png", "{name}.html"],
            caption="../report/data.rst",
            category="Sources and lineage",
        ),
    log:
        "logs/data_report.log",
    benchmark:
        "logs/benchmarks/data_report.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
    shell:
        "bloodcell --log {log} data-report --extracts {input.extracts}"
        " --shard {input.shard} --data data --out {output}"
