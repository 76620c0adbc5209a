rule evaluate:
    input:
        shards=expand("data/synth/{shard}", shard=SHARDS),
        model="models/detector.keras",
        histories=["plots/train/classifier.csv", "plots/train/detector.csv"],
        code=EVAL_CODE + ["bloodcell/evaluate/test_split.py", "bloodcell/evaluate/plots.py"],
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
        m=config["model"],
        d=config["decode"],
        e=config["evaluate"],
    shell:
        "bloodcell --log {log} evaluate --shards data/synth --model {input.model}"
        " --histories {input.histories} --anchors {params.m[anchors]}"
        " --score-threshold {params.d[score_threshold]} --nms-iou {params.d[nms_iou]}"
        " --max-dets {params.e[max_dets]} --rbc-iou {params.e[rbc_iou]}"
        " --map-score-threshold {params.e[map_score_threshold]}"
        " --metrics {output.metrics} --plots {output.plots} --figures {output.figures}"


rule evaluate_slides:
    input:
        slides="data/slides",
        model="models/detector.keras",
        code=EVAL_CODE
        + [
            "bloodcell/detect/whole_smear.py",
            "bloodcell/common/boxes.py",
            "bloodcell/evaluate/whole_slides.py",
            "bloodcell/detect/outputs.py",
            "bloodcell/evaluate/test_split.py",
            "bloodcell/evaluate/plots.py",
        ],
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
        m=config["model"],
        d=config["decode"],
        s=config["slide_detection"],
    shell:
        "bloodcell --log {log} evaluate-slides --slides {input.slides} --model {input.model}"
        " --anchors {params.m[anchors]} --score-threshold {params.d[score_threshold]}"
        " --nms-iou {params.d[nms_iou]} --overlap {params.s[overlap]}"
        " --merge-metric {params.s[merge_metric]} --merge-iou {params.s[merge_iou]}"
        " --adjacency-px {params.s[adjacency_px]}"
        " --metrics {output.metrics} --figures {output.figures}"
