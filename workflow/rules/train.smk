rule train_classifier:
    input:
        shards=expand("data/synth/{shard}", shard=SHARDS),
        code=code_deps("bloodcell.train.commands"),
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
        epochs=param("train_classifier.epochs"),
        batch=param("train_classifier.batch"),
        schedule=param("train_classifier.schedule"),
        precision=param("train_classifier.precision"),
    shell:
        "bloodcell --log {log} train-classifier --shards data/synth"
        " --model {output.model} --history {output.history} --metrics {output.metrics}"
        " --seed {params.seed} --epochs {params.epochs} --batch {params.batch}"
        " --schedule {params.schedule} --precision {params.precision}"


rule train_detector:
    input:
        shards=expand("data/synth/{shard}", shard=SHARDS),
        init="models/classifier.keras",
        real=REAL_TILES,
        code=code_deps("bloodcell.train.commands"),
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
        epochs=param("train_detector.epochs"),
        batch=param("train_detector.batch"),
        schedule=param("train_detector.schedule"),
        precision=param("train_detector.precision"),
        anchors=param("model.anchors"),
        match_iou=param("model.match_iou"),
        head=param("model.head"),
        lambda_coord=param("train_detector.lambda_coord"),
        lambda_noobj=param("train_detector.lambda_noobj"),
        lambda_class=param("train_detector.lambda_class"),
        class_loss=param("train_detector.class_loss"),
        obj_loss=param("train_detector.obj_loss"),
        obj_target=param("train_detector.obj_target"),
        box_loss=param("train_detector.box_loss"),
        augment=param("train_detector.augment"),
        ema=param("train_detector.ema"),
        select=param("train_detector.select"),
        map_score_threshold=param("evaluate.map_score_threshold"),
        nms_iou=param("decode.nms_iou"),
        real=real_data_args,
    shell:
        "bloodcell --log {log} train-detector --shards data/synth --init {input.init}"
        " --model {output.model} --history {output.history} --metrics {output.metrics}"
        " --seed {params.seed} --epochs {params.epochs} --batch {params.batch}"
        " --schedule {params.schedule} --precision {params.precision}"
        " --anchors {params.anchors} --match-iou {params.match_iou}"
        " --head {params.head}"
        " --lambda {params.lambda_coord} {params.lambda_noobj} {params.lambda_class}"
        " --class-loss {params.class_loss} --obj-loss {params.obj_loss}"
        " --obj-target {params.obj_target}"
        " --box-loss {params.box_loss} --augment {params.augment} --ema {params.ema}"
        " --select {params.select}"
        " --map-score-threshold {params.map_score_threshold}"
        " --nms-iou {params.nms_iou}{params.real}"
