rule train_classifier:
    input:
        shards=expand("data/synth/{shard}", shard=SHARDS),
        code=TRAIN_CODE,
    output:
        model="models/classifier.keras",
        history="plots/train/classifier.csv",
        metrics="metrics/train_classifier.json",
    log:
        "logs/train_classifier.log",
    benchmark:
        "logs/benchmarks/train_classifier.tsv"
    conda:
        CONDA_ENV
    threads: 8
    resources:
        mem_mb=8000,
        gpu=1,
    params:
        seed=config["seed"],
        t=config["train_classifier"],
    shell:
        "bloodcell --log {log} train-classifier --shards data/synth"
        " --model {output.model} --history {output.history} --metrics {output.metrics}"
        " --seed {params.seed} --epochs {params.t[epochs]} --batch {params.t[batch]}"
        " --schedule {params.t[schedule]} --precision {params.t[precision]}"


rule train_detector:
    input:
        shards=expand("data/synth/{shard}", shard=SHARDS),
        init="models/classifier.keras",
        real=REAL_TILES,
        code=TRAIN_CODE + EVAL_CODE + ["bloodcell/train/targets.py"],
    output:
        model="models/detector.keras",
        history="plots/train/detector.csv",
        metrics="metrics/train_detector.json",
    log:
        "logs/train_detector.log",
    benchmark:
        "logs/benchmarks/train_detector.tsv"
    conda:
        CONDA_ENV
    threads: 8
    resources:
        mem_mb=8000,
        gpu=1,
    params:
        seed=config["seed"],
        t=config["train_detector"],
        m=config["model"],
        d=config["decode"],
        e=config["evaluate"],
        real=real_data_args,
    shell:
        "bloodcell --log {log} train-detector --shards data/synth --init {input.init}"
        " --model {output.model} --history {output.history} --metrics {output.metrics}"
        " --seed {params.seed} --epochs {params.t[epochs]} --batch {params.t[batch]}"
        " --schedule {params.t[schedule]} --precision {params.t[precision]}"
        " --anchors {params.m[anchors]} --match-iou {params.m[match_iou]}"
        " --lambda {params.t[lambda_coord]} {params.t[lambda_noobj]} {params.t[lambda_class]}"
        " --class-loss {params.t[class_loss]} --select {params.t[select]}"
        " --map-score-threshold {params.e[map_score_threshold]}"
        " --nms-iou {params.d[nms_iou]}{params.real}"
