LINEAGE_SHARD = next(s for s in SHARDS if s.startswith("test-"))


rule split:
    input:
        extracts=expand("data/extract/{db}", db=DATABASES),
        code=code_deps("bloodcell.dataset.split"),
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
        train=param("split.train"),
        valid=param("split.valid"),
        test=param("split.test"),
    shell:
        "bloodcell --log {log} split {input.extracts} --out {output} --seed {params.seed}"
        " --train {params.train} --valid {params.valid} --test {params.test}"


rule backgrounds:
    input:
        split="data/split",
        extracts=expand("data/extract/{db}", db=RBC_DATABASES),
        code=code_deps("bloodcell.dataset.backgrounds"),
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
        size=param("backgrounds.size"),
        rbc_min=param("backgrounds.rbc_min"),
        rbc_max=param("backgrounds.rbc_max"),
        max_iou=param("backgrounds.max_iou"),
        mixed_infected=param("backgrounds.mixed_infected"),
    shell:
        "bloodcell --log {log} backgrounds {wildcards.split}"
        " --split-table {input.split}/split.csv --extracts {input.extracts}"
        " --out {output} --seed {params.seed} --per-kind {params.per_kind}"
        " --size {params.size} --rbc-count {params.rbc_min} {params.rbc_max}"
        " --max-iou {params.max_iou} --mixed-infected {params.mixed_infected}"


rule synth:
    input:
        split="data/split",
        extracts=expand("data/extract/{db}", db=DATABASES),
        backgrounds=shard_backgrounds,
        code=code_deps("bloodcell.dataset.synth"),
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
        split=lambda wildcards: shard_params(wildcards)["split"],
        images=lambda wildcards: shard_params(wildcards)["images"],
        mix_background=param("synth.mix.background"),
        mix_single=param("synth.mix.single"),
        mix_double=param("synth.mix.double"),
        mix_triple=param("synth.mix.triple"),
        partial_share=param("synth.partial_share"),
        corner_share=param("synth.corner_share"),
        min_visible=param("synth.min_visible"),
        bg_size=param("backgrounds.size"),
    shell:
        "bloodcell --log {log} synth {wildcards.shard}"
        " --split-table {input.split}/split.csv --extracts {input.extracts}"
        " --backgrounds {input.backgrounds} --out {output} --seed {params.seed}"
        " --images {params.images} --mix {params.mix_background}"
        " {params.mix_single} {params.mix_double} {params.mix_triple}"
        " --partial-share {params.partial_share} --corner-share {params.corner_share}"
        " --min-visible {params.min_visible} --bg-size {params.bg_size}"


rule slides:
    input:
        split="data/split",
        extracts=expand("data/extract/{db}", db=DATABASES),
        code=code_deps("bloodcell.dataset.synthetic_slides"),
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
        square_slides=param("slides.count"),
        size=param("slides.size"),
        extra_sizes=param("slides.extra_sizes"),
        wbc=param("slides.wbc"),
        thrombocytes=param("slides.thrombocytes"),
        clumps=param("slides.clumps"),
        seam_share=param("slides.seam_share"),
        min_visible=param("synth.min_visible"),
        rbc_min=param("backgrounds.rbc_min"),
        rbc_max=param("backgrounds.rbc_max"),
        max_iou=param("backgrounds.max_iou"),
        mixed_infected=param("backgrounds.mixed_infected"),
    shell:
        "bloodcell --log {log} slides --split-table {input.split}/split.csv"
        " --extracts {input.extracts} --out {output} --seed {params.seed}"
        " --count {params.square_slides} --size {params.size}"
        " --extra-sizes {params.extra_sizes}"
        " --wbc {params.wbc[0]} {params.wbc[1]}"
        " --thrombocytes {params.thrombocytes[0]} {params.thrombocytes[1]}"
        " --clumps {params.clumps[0]} {params.clumps[1]}"
        " --seam-share {params.seam_share} --min-visible {params.min_visible}"
        " --rbc-count {params.rbc_min} {params.rbc_max}"
        " --max-iou {params.max_iou} --mixed-infected {params.mixed_infected}"


rule dataset_stats:
    input:
        shard="data/synth/{shard}",
        code=code_deps("bloodcell.dataset.stats"),
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
        code=code_deps("bloodcell.provenance.data_report"),
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
