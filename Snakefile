# bloodcell: raw databases -> cells -> split -> synthetic data -> training -> evaluation.
# Rules are wiring only; all logic lives in the bloodcell package. dvc.yaml mirrors every rule.


configfile: "params.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/sources.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/real.smk"


rule all:
    default_target: True
    input:
        "data/split",
        expand("data/synth/{shard}", shard=SHARDS),
        "data/slides",
        "reports/data",
        expand("metrics/dataset/{shard}.json", shard=SHARDS),
        "metrics/evaluate.json",
        "metrics/evaluate_slides.json",
        REAL_TILES,
        expand("metrics/evaluate_real/{name}.json", name=REAL_SETS),
