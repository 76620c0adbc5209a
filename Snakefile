# bloodcell: raw databases -> single-cell samples -> split (-> synthetic data, training, ...).
# Rules are wiring only; all logic lives in the bloodcell package. dvc.yaml mirrors every rule.


configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/sources.smk"
include: "workflow/rules/dataset.smk"


rule all:
    default_target: True
    input:
        "data/split",
        expand("data/synth/{shard}", shard=SHARDS),
        "data/slides",
        expand("metrics/dataset/{shard}.json", shard=SHARDS),
