# Real data (the public preset, config/params-public.yaml): the extractors of the public
# stand-in layouts, annotated training smears cut into tiles, and the evaluation on annotated
# real smears that training never saw. Rules that a preset does not ask for never run.


rule extract_wbcseg:
    input:
        db=source_dir("wbcseg"),
        code=EXTRACT_CODE + ["bloodcell/sources/wbcseg.py"],
    output:
        directory("data/extract/wbcseg"),
    log:
        "logs/extract_wbcseg.log",
    benchmark:
        "logs/benchmarks/extract_wbcseg.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=2000,
    params:
        p=extract_params("wbcseg"),
    shell:
        "bloodcell --log {log} extract-wbcseg {input.db} {output}"
        " --scale-1 {params.p[scale_1]} --scale-2 {params.p[scale_2]}"
        " --pad {params.p[pad]} --min-area {params.p[min_area]}"


rule extract_voc:
    input:
        db=source_dir("voc"),
        code=EXTRACT_CODE
        + ["bloodcell/sources/voc.py", "bloodcell/sources/annotations.py"],
    output:
        directory("data/extract/voc"),
    log:
        "logs/extract_voc.log",
    benchmark:
        "logs/benchmarks/extract_voc.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=2000,
    params:
        p=extract_params("voc"),
    shell:
        "bloodcell --log {log} extract-voc {input.db} {output}"
        " --image-set {params.p[image_set]} --scale {params.p[scale]}"
        " --pad {params.p[pad]} --min-area {params.p[min_area]}"


rule extract_iml:
    input:
        db=source_dir("iml"),
        images_list=extract_params("iml").get("images_list", []),
        code=EXTRACT_CODE
        + ["bloodcell/sources/iml.py", "bloodcell/sources/annotations.py"],
    output:
        directory("data/extract/iml"),
    log:
        "logs/extract_iml.log",
    benchmark:
        "logs/benchmarks/extract_iml.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=2000,
    params:
        p=extract_params("iml"),
    shell:
        "bloodcell --log {log} extract-iml {input.db} {output}"
        " --images-list {input.images_list} --scale {params.p[scale]}"
        " --pad {params.p[pad]} --min-area {params.p[min_area]}"


rule real_tiles:
    input:
        sets=[
            f
            for s in config.get("real_tiles", {}).get("sets", {}).values()
            for f in set_inputs(s)
        ],
        code=[
            "bloodcell/dataset/real_tiles.py",
            "bloodcell/sources/annotations.py",
            "bloodcell/sources/class_map.py",
            "bloodcell/dataset/shards.py",
        ],
    output:
        report(
            directory("data/real_tiles"),
            patterns=["contact_{kind}.png"],
            caption="../report/real_tiles.rst",
            category="Real tiles",
        ),
    log:
        "logs/real_tiles.log",
    benchmark:
        "logs/benchmarks/real_tiles.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=3000,
    params:
        seed=config["seed"],
        t=config.get("real_tiles", {}),
        sets=lambda wildcards: real_tile_sets(),
    shell:
        "bloodcell --log {log} real-tiles {params.sets} --out {output} --seed {params.seed}"
        " --variants {params.t[variants]} --stride {params.t[stride]}"
        " --min-visible {params.t[min_visible]}"


rule evaluate_real:
    input:
        sets=lambda wildcards: set_inputs(config["evaluate_real"][wildcards.name]),
        model="models/detector.keras",
        code=EVAL_CODE
        + [
            "bloodcell/evaluate/annotated_images.py",
            "bloodcell/sources/class_map.py",
            "bloodcell/sources/annotations.py",
            "bloodcell/detect/rbc_size.py",
            "bloodcell/detect/whole_smear.py",
            "bloodcell/common/boxes.py",
            "bloodcell/detect/smear_reader.py",
            "bloodcell/detect/smear_headers.py",
            "bloodcell/detect/smear_convert.py",
            "bloodcell/detect/smear_tiff.py",
            "bloodcell/detect/smear_view.py",
            "bloodcell/model/card.py",
        ],
    output:
        metrics="metrics/evaluate_real/{name}.json",
        figures=report(
            directory("reports/evaluate_real/{name}"),
            patterns=["{figure}.png", "{figure}.html"],
            caption="../report/evaluate_real.rst",
            category="Real smears",
            subcategory="{name}",
        ),
    log:
        "logs/evaluate_real/{name}.log",
    benchmark:
        "logs/benchmarks/evaluate_real/{name}.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=4000,
    params:
        e=lambda wildcards: evaluate_real_set(wildcards.name),
        m=config["model"],
        d=config["decode"],
        s=config["slide_detection"],
        ev=config["evaluate"],
    shell:
        "bloodcell --log {log} evaluate-images {params.e[images]} --labels {params.e[labels]}"
        " --format {params.e[format]} --class-map {params.e[class_map]}"
        " {params.e[list_arg]} --rbc-diameter {params.e[rbc_diameter]}"
        " --model {input.model} --anchors {params.m[anchors]}"
        " --score-threshold {params.d[score_threshold]} --nms-iou {params.d[nms_iou]}"
        " --overlap {params.s[overlap]} --merge-metric {params.s[merge_metric]}"
        " --merge-iou {params.s[merge_iou]} --adjacency-px {params.s[adjacency_px]}"
        " --map-score-threshold {params.ev[map_score_threshold]}"
        " --max-dets {params.ev[max_dets]}"
        " --metrics {output.metrics} --figures {output.figures}"
