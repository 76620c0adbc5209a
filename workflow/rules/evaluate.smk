rule evaluate:
    input:
        shards=expand("data/synth/{shard}", shard=SHARDS),
        model="models/detector.keras",
        histories=["plots/train/classifier.csv", "plots/train/detector.csv"],
        code=code_deps("bloodcell.evaluate.commands:main_evaluate"),
    output:
        metrics="metrics/evaluate.json",
        plots=directory("plots/evaluate"),
        figures=report(
            directory("reports/evaluate"),
            patterns=["{name}.png", "{name}.html"],
            caption="../report/evaluate.rst",
            category="Evaluation",
        ),
    log:
        "logs/evaluate.log",
    benchmark:
        "logs/benchmarks/evaluate.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=4000,
    params:
        anchors=param("model.anchors"),
        score_threshold=param("decode.score_threshold"),
        nms_iou=param("decode.nms_iou"),
        tta=param("decode.tta"),
        max_dets=param("evaluate.max_dets"),
        rbc_iou=param("evaluate.rbc_iou"),
        map_score_threshold=param("evaluate.map_score_threshold"),
    shell:
        "bloodcell --log {log} evaluate --shards data/synth --model {input.model}"
        " --histories {input.histories} --anchors {params.anchors}"
        " --score-threshold {params.score_threshold} --nms-iou {params.nms_iou}"
        " --tta {params.tta} --max-dets {params.max_dets} --rbc-iou {params.rbc_iou}"
        " --map-score-threshold {params.map_score_threshold}"
        " --metrics {output.metrics} --plots {output.plots} --figures {output.figures}"


rule evaluate_slides:
    input:
        slides="data/slides",
        model="models/detector.keras",
        code=code_deps("bloodcell.evaluate.commands:main_evaluate_slides"),
    output:
        metrics="metrics/evaluate_slides.json",
        figures=report(
            directory("reports/slides"),
            patterns=["{name}.png", "{name}.html"],
            caption="../report/slides.rst",
            category="Whole slides",
        ),
    log:
        "logs/evaluate_slides.log",
    benchmark:
        "logs/benchmarks/evaluate_slides.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=4000,
    params:
        anchors=param("model.anchors"),
        score_threshold=param("decode.score_threshold"),
        nms_iou=param("decode.nms_iou"),
        tta=param("decode.tta"),
        overlap=param("slide_detection.overlap"),
        merge_metric=param("slide_detection.merge_metric"),
        merge_iou=param("slide_detection.merge_iou"),
        adjacency_px=param("slide_detection.adjacency_px"),
    shell:
        "bloodcell --log {log} evaluate-slides --slides {input.slides} --model {input.model}"
        " --anchors {params.anchors} --score-threshold {params.score_threshold}"
        " --nms-iou {params.nms_iou} --tta {params.tta} --overlap {params.overlap}"
        " --merge-metric {params.merge_metric} --merge-iou {params.merge_iou}"
        " --adjacency-px {params.adjacency_px}"
        " --metrics {output.metrics} --figures {output.figures}"
