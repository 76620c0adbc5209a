# Real data (the public preset, config/params-public.yaml): the extractors of the public
# stand-in layouts, annotated training smears cut into tiles, and the evaluation on annotated
# real smears that training never saw. Each rule is defined only where the preset has it.


if "wbcseg" in DATABASES:

    rule extract_wbcseg:
        input:
            db=source_dir("wbcseg"),
            code=code_deps("bloodcell.sources.wbcseg"),
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
            scale_1=extract_param("wbcseg", "scale_1"),
            scale_2=extract_param("wbcseg", "scale_2"),
            pad=extract_param("wbcseg", "pad"),
            min_area=extract_param("wbcseg", "min_area"),
        shell:
            "bloodcell --log {log} extract-wbcseg {input.db} {output}"
            " --scale-1 {params.scale_1} --scale-2 {params.scale_2}"
            " --pad {params.pad} --min-area {params.min_area}"


if "voc" in DATABASES:

    rule extract_voc:
        input:
            db=source_dir("voc"),
            code=code_deps("bloodcell.sources.voc"),
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
            image_set=extract_param("voc", "image_set"),
            scale=extract_param("voc", "scale"),
            pad=extract_param("voc", "pad"),
            min_area=extract_param("voc", "min_area"),
        shell:
            "bloodcell --log {log} extract-voc {input.db} {output}"
            " --image-set {params.image_set} --scale {params.scale}"
            " --pad {params.pad} --min-area {params.min_area}"


if "iml" in DATABASES:

    rule extract_iml:
        input:
            db=source_dir("iml"),
            images_list=extract_param("iml", "images_list") or [],
            code=code_deps("bloodcell.sources.iml"),
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
            scale=extract_param("iml", "scale"),
            pad=extract_param("iml", "pad"),
            min_area=extract_param("iml", "min_area"),
        shell:
            "bloodcell --log {log} extract-iml {input.db} {output}"
            " --images-list {input.images_list} --scale {params.scale}"
            " --pad {params.pad} --min-area {params.min_area}"


if REAL_TILES:

    rule real_tiles:
        input:
            sets=[
                f
                for s in config.get("real_tiles", {}).get("sets", {}).values()
                for f in set_inputs(s)
            ],
            code=code_deps("bloodcell.dataset.real_tiles"),
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
            variants=param("real_tiles.variants"),
            stride=param("real_tiles.stride"),
            min_visible=param("real_tiles.min_visible"),
            sets=lambda wildcards: real_tile_sets(),
        shell:
            "bloodcell --log {log} real-tiles {params.sets} --out {output} --seed {params.seed}"
            " --variants {params.variants} --stride {params.stride}"
            " --min-visible {params.min_visible}"


if REAL_SETS:

    rule evaluate_real:
        input:
            sets=lambda wildcards: set_inputs(config["evaluate_real"][wildcards.name]),
            model="models/detector.keras",
            code=code_deps("bloodcell.evaluate.on_annotated_images"),
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
            anchors=param("model.anchors"),
            score_threshold=param("decode.score_threshold"),
            nms_iou=param("decode.nms_iou"),
            tta=param("decode.tta"),
            overlap=param("slide_detection.overlap"),
            merge_metric=param("slide_detection.merge_metric"),
            merge_iou=param("slide_detection.merge_iou"),
            adjacency_px=param("slide_detection.adjacency_px"),
            map_score_threshold=param("evaluate.map_score_threshold"),
            max_dets=param("evaluate.max_dets"),
        shell:
            "bloodcell --log {log} evaluate-images {params.e[images]} --labels {params.e[labels]}"
            " --format {params.e[format]} --class-map {params.e[class_map]}"
            " {params.e[list_arg]} --rbc-diameter {params.e[rbc_diameter]}"
            " --model {input.model} --anchors {params.anchors}"
            " --score-threshold {params.score_threshold} --nms-iou {params.nms_iou}"
            " --tta {params.tta} --overlap {params.overlap} --merge-metric {params.merge_metric}"
            " --merge-iou {params.merge_iou} --adjacency-px {params.adjacency_px}"
            " --map-score-threshold {params.map_score_threshold}"
            " --max-dets {params.max_dets}"
            " --metrics {output.metrics} --figures {output.figures}"
