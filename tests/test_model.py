"""ModifiedYolo, its targets, its loss and decoding: shapes, the original's anchor table,
batch-size independence and an encode -> decode round trip."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from bloodcell.common.hyperparams import (
    ORIGINAL_ANCHORS,
    learning_rate,
    parse_anchors,
    parse_schedule,
)
from bloodcell.model import network as models
from bloodcell.model.decode import DecodeConfig, decode_boxes, detect_batch, to_frame
from bloodcell.train.loss import LossWeights, classifier_loss, detector_loss, detector_terms
from bloodcell.train.targets import detector_targets, multi_hot


@pytest.fixture(scope="module")
def nets():
    return models.classifier(), models.detector()


def test_output_shapes_and_the_trunk_copy(nets):
    clf, det = nets
    x = np.zeros((2, 224, 224, 3), np.uint8)
    assert clf(x).shape == (2, 10)
    assert det(x).shape == (2, 14, 14, 6, 15)
    assert clf.get_layer("act_conv18").output.shape[1:] == (14, 14, 128)
    assert models.copy_trunk(clf, det) == 30  # 15 convolutions and their BatchNorms
    for name in models.trunk_layer_names():
        for a, b in zip(clf.get_layer(name).get_weights(), det.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(clf.get_layer("conv19").get_weights()[0][..., :1],
                              det.get_layer("conv24").get_weights()[0][..., :1])


def targets_for(boxes, classes):
    return detector_targets(tf.constant(boxes, tf.float32), tf.constant(classes, tf.int64),
                            ORIGINAL_ANCHORS, 0.7).numpy()



def randomise_batchnorm(net, rng: np.random.Generator) -> None:
    """Give every BatchNorm of ``net`` random gamma, beta, moving mean and variance."""
    for layer in net.layers:
        if layer.name.startswith("bn_"):
            n = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 0.3, n),
                               rng.normal(0, 0.3, n), rng.uniform(0.2, 3, n)])


def test_folding_batchnorm_keeps_the_outputs_and_drops_the_bn_layers(nets):
    _, det = nets
    rng = np.random.default_rng(3)
    randomise_batchnorm(det, rng)
    folded = models.fold_batchnorm(det)
    x = rng.integers(0, 256, (2, 224, 224, 3)).astype(np.uint8)
    want, got = det(x, training=False).numpy(), folded(x, training=False).numpy()
    assert not any(layer.name.startswith("bn_") for layer in folded.layers)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())


def test_load_detector_refuses_the_classifier_and_a_broken_file(nets, tmp_path):
    from bloodcell.common.errors import UserError
    from bloodcell.model.inference import load_detector

    nets[0].save(tmp_path / "classifier.keras")
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a ModifiedYolo detector"):
        load_detector(tmp_path / "classifier.keras")
    with pytest.raises(UserError, match="not a readable Keras model"):
        load_detector(tmp_path / "broken.keras")

@pytest.mark.parametrize(("size", "anchors"), [
    ((20, 20), {5}),          # thrombocyte: the best anchor only
    ((34, 34), {5}),          # RBC
    ((45, 45), {0, 5}),       # large RBC: two anchors above 0.7
    ((55, 55), {0}),          # lymphocyte
    ((75, 75), {4}),          # WBC
    ((95, 95), {3, 4}),       # large WBC
    ((45, 90), {2}),          # half-clipped WBC
])
def test_responsible_anchors_follow_the_original_table(size, anchors):
    w, h = size
    t = targets_for([[100 - w / 2, 60 - h / 2, w, h]], [3])
    cells = np.argwhere(t[..., 14] == 1)
    assert {int(a) for a in cells[:, 2]} == anchors
    assert {(int(r), int(c)) for r, c, _ in cells} == {(60 // 16, 100 // 16)}


def test_target_vector_holds_one_hot_offsets_and_log_sizes():
    t = targets_for([[40, 70, 30, 34]], [8])  # centre (55, 87) px -> cell row 5, col 3
    v = t[5, 3, 5]
    assert v[8] == 1 and v[:10].sum() == 1 and v[14] == 1
    np.testing.assert_allclose(v[10:12], [55 / 16 - 3, 87 / 16 - 5], atol=1e-6)
    np.testing.assert_allclose(v[12:14], np.log([30 / 16 / 2.7, 34 / 16 / 2.7]), atol=1e-6)
    assert t[..., 14].sum() == 1


def test_a_later_object_in_the_same_cell_and_anchor_wins_and_zero_sizes_stay_finite():
    t = targets_for([[40, 40, 30, 30], [41, 41, 30, 30], [0, 0, 0, 0]], [9, 8, 6])
    assert t[3, 3, 5, 8] == 1 and t[3, 3, 5, 9] == 0
    assert np.isfinite(t).all()
    assert t[..., 14].sum() == 2


def test_multi_hot_and_empty_images():
    np.testing.assert_array_equal(multi_hot(tf.constant([9, 9, 2], tf.int64)).numpy(),
                                  [0, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    assert multi_hot(tf.zeros((0,), tf.int64)).numpy().sum() == 0
    assert targets_for(np.zeros((0, 4)), np.zeros((0,), int)).sum() == 0


def perfect_output(target: np.ndarray) -> np.ndarray:
    """Raw outputs that decode exactly to the targets: logit/inverse-sigmoid encodings."""
    raw = np.full(target.shape, -12.0, np.float32)
    obj = target[..., 14] == 1
    raw[..., :10] = np.where(target[..., :10] == 1, 12.0, -12.0)
    off = np.clip(target[..., 10:12], 1e-4, 1 - 1e-4)
    raw[..., 10:12] = np.log(off / (1 - off))
    raw[..., 12:14] = target[..., 12:14]
    raw[..., 14] = np.where(obj, 12.0, -12.0)
    return raw


def test_loss_is_near_zero_for_a_perfect_output_and_independent_of_the_batch_size():
    t = targets_for([[40, 70, 30, 34], [100, 100, 80, 80]], [8, 2])[None]
    perfect = perfect_output(t[0])[None]
    w = LossWeights()
    assert float(detector_loss(t, perfect, w)) < 1e-3
    noisy = perfect + np.random.default_rng(0).normal(0, 1, perfect.shape).astype(np.float32)
    one = float(detector_loss(t, noisy, w))
    four = float(detector_loss(np.repeat(t, 4, 0), np.repeat(noisy, 4, 0), w))
    assert one == pytest.approx(four, rel=1e-5)
    terms = detector_terms(tf.constant(t), tf.constant(noisy))
    assert set(terms) == {"coord", "obj", "noobj", "class"}
    assert float(classifier_loss(tf.constant([[1.0, 0.0]]), tf.constant([[30.0, -30.0]]))) < 1e-6


def test_decoding_and_nms_return_the_encoded_boxes():
    boxes = [[40, 70, 30, 34], [100, 100, 80, 80]]
    t = targets_for(boxes, [8, 2])
    raw = perfect_output(t)[None]
    got = to_frame(["a"], *[v.numpy() for v in detect_batch(raw, ORIGINAL_ANCHORS,
                                                            DecodeConfig())])
    got = got.sort_values("x").reset_index(drop=True)
    assert list(got["class_idx"]) == [8, 2]  # NMS joined the two anchors of the 80 px box
    np.testing.assert_allclose(got[["x", "y", "w", "h"]].to_numpy(), boxes, atol=0.05)
    assert (got["score"] > 0.99).all()
    b, c, s = decode_boxes(tf.constant(raw), ORIGINAL_ANCHORS)
    assert b.shape == (1, 1176, 4) and c.shape == (1, 1176) and s.shape == (1, 1176)


def test_score_threshold_and_nms_iou_are_separate():
    raw = perfect_output(targets_for([[40, 70, 30, 34]], [8]))[None]
    none = detect_batch(raw, ORIGINAL_ANCHORS, DecodeConfig(score_threshold=0.999999))
    assert int(none[3][0]) == 0


def test_params_strings_parse():
    assert parse_anchors("3.1x3.1, 2.7x2.7") == ((3.1, 3.1), (2.7, 2.7))
    s = parse_schedule("1:1e-3,16:1e-4,18:1e-5")
    assert [learning_rate(s, e) for e in (1, 15, 16, 17, 18, 30)] == [1e-3, 1e-3, 1e-4, 1e-4,
                                                                      1e-5, 1e-5]
    with pytest.raises(ValueError):
        parse_schedule("2:1e-3")


def test_cross_entropy_class_term_is_near_zero_when_right_and_large_when_wrong():
    t = targets_for([[40, 70, 30, 34]], [8])[None]
    right = perfect_output(t[0])[None]
    wrong = right.copy()
    wrong[..., :10] = np.roll(right[..., :10], 1, axis=-1)
    ce = LossWeights(class_loss="ce")
    assert float(detector_terms(t, right, "ce")["class"][0]) < 1e-3
    assert float(detector_terms(t, wrong, "ce")["class"][0]) > 10  # MSE saturates at 2
    assert float(detector_terms(t, wrong, "mse")["class"][0]) <= 2.0 + 1e-6
    assert float(detector_loss(t, wrong, ce)) > float(detector_loss(t, wrong, LossWeights()))


@pytest.mark.parametrize("form", ["mse", "ce"])
def test_an_untyped_white_cell_trains_box_and_objectness_but_not_the_class(form):
    typed = targets_for([[40, 70, 90, 90]], [2])[None]
    untyped = targets_for([[40, 70, 90, 90]], [-1])[None]
    assert untyped[..., 14].sum() == typed[..., 14].sum() > 0  # same responsible anchors
    assert untyped[..., :10].sum() == 0
    out = perfect_output(typed[0])[None]
    out[..., :10] = np.roll(out[..., :10], 3, axis=-1)  # confidently the wrong type
    out[..., 12:14] += 0.5  # and a box off by a factor e^0.5
    t_typed, t_untyped = detector_terms(typed, out, form), detector_terms(untyped, out, form)
    assert float(t_typed["class"][0]) > 0.5
    assert float(t_untyped["class"][0]) == 0.0
    for term in ("coord", "obj", "noobj"):
        assert float(t_untyped[term][0]) == pytest.approx(float(t_typed[term][0]))
    assert float(t_untyped["coord"][0]) > 0.4
    assert multi_hot(tf.constant([-1, 8], tf.int64)).numpy().tolist() == [0] * 8 + [1, 0]


@pytest.mark.parametrize("form", ["mse", "ce"])
def test_any_type_asks_an_untyped_white_cell_for_some_type_not_a_given_one(form):
    untyped = targets_for([[40, 70, 90, 90]], [-1])[None]
    out = perfect_output(targets_for([[40, 70, 90, 90]], [2]))[None]  # sure: Neutrophil
    as_rbc = out.copy()
    as_rbc[..., :10] = np.roll(out[..., :10], 7, axis=-1)  # sure: healthy RBC
    as_lymph = out.copy()
    as_lymph[..., :10] = np.roll(out[..., :10], 1, axis=-1)  # sure: another WBC type
    term = {name: float(detector_terms(untyped, o, form, "any_type")["class"][0])
            for name, o in (("neutrophil", out), ("lymphocyte", as_lymph), ("rbc", as_rbc))}
    assert term["neutrophil"] == pytest.approx(term["lymphocyte"], abs=1e-5)
    assert term["neutrophil"] < 1e-3 < 0.5 < term["rbc"]
    typed = targets_for([[40, 70, 90, 90]], [2])[None]  # a typed cell is unchanged by the mode
    assert float(detector_terms(typed, as_lymph, form, "any_type")["class"][0]) == \
        pytest.approx(float(detector_terms(typed, as_lymph, form)["class"][0]))


def test_grouped_scoring_sums_a_groups_classes_and_keeps_its_best_class():
    from bloodcell.model.decode import best_class
    from bloodcell.sources.class_map import load_class_map, model_groups

    probs = tf.constant([[0.15, 0.1, 0.12, 0.13, 0.1, 0.0, 0.0, 0.0, 0.0, 0.4],
                         [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.2, 0.3, 0.4]])
    cls, score = best_class(probs, None)
    assert cls.numpy().tolist() == [9, 9]
    bccd = model_groups(load_class_map("bccd"))
    assert bccd == (0, 0, 0, 0, 0, 0, 1, 1, 2, 2)
    cls, score = best_class(probs, bccd)  # five unsure WBC types outweigh one RBC class
    assert cls.numpy().tolist() == [0, 9]
    np.testing.assert_allclose(score.numpy(), [0.6, 0.7], rtol=1e-6)
    iml = model_groups(load_class_map("iml"))  # WBC classes are not scored on IML
    assert best_class(probs, iml)[0].numpy().tolist() == [9, 9]


def test_fused_batchnorm_trains_like_the_keras_layer():
    """Same outputs, gradients and moving statistics as keras.layers.BatchNormalization, through
    the fused kernel in training, and the Keras path at inference; saved and loaded by name."""
    import keras

    from bloodcell.model.fused_batchnorm import FusedBatchNorm

    x = tf.random.stateless_normal((4, 6, 6, 5), seed=(1, 2)) * 3.0 + 1.0
    pair = []
    for layer in (FusedBatchNorm(momentum=0.9, epsilon=1e-3),
                  keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3)):
        layer.build(x.shape)
        layer.gamma.assign(tf.linspace(0.5, 1.5, 5))
        layer.beta.assign(tf.linspace(-1.0, 1.0, 5))
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.range(5, dtype=tf.float32))
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        pair.append((y, grads, layer.moving_mean.numpy(), layer.moving_variance.numpy(),
                     layer(x, training=False)))
    (y1, g1, m1, v1, i1), (y2, g2, m2, v2, i2) = pair
    np.testing.assert_allclose(y1, y2, atol=1e-4)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, atol=1e-3)
    np.testing.assert_allclose(m1, m2, rtol=1e-5)
    np.testing.assert_allclose(v1, v2, rtol=1e-4)
    np.testing.assert_allclose(i1, i2, atol=1e-5)
    assert not np.allclose(v1, 1.0)  # the moving variance did move


def test_a_detector_with_fused_batchnorm_saves_and_loads(tmp_path):
    import keras

    net = models.detector()
    assert any(type(layer).__name__ == "FusedBatchNorm" for layer in net.layers)
    net.save(tmp_path / "d.keras")
    loaded = keras.models.load_model(tmp_path / "d.keras", compile=False, safe_mode=True)
    x = tf.random.stateless_uniform((1, 224, 224, 3), seed=(3, 4), maxval=255.0)
    np.testing.assert_allclose(loaded(x, training=False), net(x, training=False), atol=1e-5)


@pytest.mark.parametrize("obj_loss", ["mse", "bce"])
def test_objectness_terms_are_near_zero_when_right(obj_loss):
    t = targets_for([[40, 70, 30, 34], [100, 100, 12, 12]], [8, 7])[None]
    w = LossWeights(obj_loss=obj_loss)  # logits of +-12: cross-entropy 6e-6 per anchor
    assert float(detector_loss(t, perfect_output(t[0])[None], w)) < 1e-2


def test_cross_entropy_objectness_still_lifts_an_anchor_whose_score_has_sunk():
    """At a responsible anchor scored near 0, the squared error's gradient has all but vanished
    and cross-entropy's has not: the thrombocyte anchor's case."""
    t = tf.constant(targets_for([[100, 100, 12, 12]], [7])[None])
    raw = perfect_output(t[0].numpy())[None]
    raw[..., 14] = np.where(t[..., 14] > 0, -6.0, -12.0)  # the object scored 0.0025
    raw = tf.constant(raw)
    grads = {}
    for form in ("mse", "bce"):
        with tf.GradientTape() as tape:
            tape.watch(raw)
            obj = detector_terms(t, raw, obj_loss=form)["obj"]
        g = tape.gradient(obj, raw)[..., 14]
        grads[form] = float(tf.reduce_min(g))  # the push up at the object's anchor
    assert grads["mse"] > -0.01
    assert grads["bce"] < -0.99


@pytest.mark.parametrize("obj_loss", ["mse", "bce"])
def test_iou_objectness_target_is_the_predicted_boxs_iou_and_trains_no_box(obj_loss):
    """obj_target iou: at a responsible anchor whose box is 1.5 times too wide (IoU 2/3) and
    scored 0.5, cross-entropy's gradient is 0.5 - 2/3 (target 1: 0.5 - 1); the squared error
    is (0.5 - 2/3)^2; no gradient reaches the box outputs through objectness."""
    t = tf.constant(targets_for([[100, 100, 40, 40]], [8])[None])
    raw = perfect_output(t[0].numpy())[None]
    obj = t[..., 14].numpy() > 0
    raw[..., 12] += np.log(1.5)
    raw[..., 14] = np.where(obj, 0.0, -12.0)
    raw = tf.constant(raw)
    anchors = ORIGINAL_ANCHORS
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(raw)
        terms = {target: detector_terms(t, raw, obj_loss=obj_loss, anchors=anchors,
                                        obj_target=target)["obj"]
                 for target in ("one", "iou")}
    n = int(obj.sum())
    if obj_loss == "mse":
        assert float(terms["iou"][0]) == pytest.approx(n * (0.5 - 2 / 3) ** 2, rel=1e-4)
        assert float(terms["one"][0]) == pytest.approx(n * 0.25, rel=1e-4)
    else:
        g = tape.gradient(terms["iou"], raw).numpy()
        np.testing.assert_allclose(g[..., 14][obj], 0.5 - 2 / 3, atol=1e-5)
        g_one = tape.gradient(terms["one"], raw).numpy()
        np.testing.assert_allclose(g_one[..., 14][obj], -0.5, atol=1e-5)
    assert float(tf.reduce_max(tf.abs(tape.gradient(terms["iou"], raw)[..., 10:14]))) == 0.0
    with pytest.raises(ValueError, match="objectness target"):
        detector_terms(t, raw, obj_target="iou")  # iou needs the anchors


def test_space_to_depth_matches_tensorflow_and_the_passthrough_head_builds_folds_and_loads(
        tmp_path):
    import keras

    x = tf.random.stateless_uniform((2, 28, 28, 32), seed=(5, 6))
    inp = keras.Input((28, 28, 32))
    s2d = keras.Model(inp, models.space_to_depth(inp))
    np.testing.assert_array_equal(s2d(x), tf.nn.space_to_depth(x, 2))

    clf = models.classifier()
    det = models.detector(head="passthrough")
    assert det.output_shape == (None, 14, 14, 6, 15)
    assert models.detector_head(det) == "passthrough" and models.detector_head(
        models.detector()) == "plain"
    assert det.get_layer("passthrough").output.shape[1:] == (14, 14, 256)
    assert models.copy_trunk(clf, det) == 30
    rng = np.random.default_rng(4)
    randomise_batchnorm(det, rng)
    img = tf.random.stateless_uniform((1, 224, 224, 3), seed=(7, 8), maxval=255.0)
    folded = models.fold_batchnorm(det)
    assert models.detector_head(folded) == "passthrough"
    np.testing.assert_allclose(folded(img), det(img, training=False), atol=2e-3)
    det.save(tmp_path / "d.keras")
    loaded = keras.models.load_model(tmp_path / "d.keras", compile=False, safe_mode=True)
    np.testing.assert_allclose(loaded(img, training=False), det(img, training=False), atol=1e-5)
    with pytest.raises(ValueError, match="head"):
        models.detector(head="fpn")


def test_only_the_passthrough_head_sees_where_a_small_blob_lies_inside_its_cell():
    """Two images differing only by where a 6 px blob sits inside one 16 px cell: the plain
    head's input at that cell (after four max-pools) can hardly tell them apart, the
    passthrough's stride-8 half can."""
    import keras

    keras.utils.set_random_seed(0)
    det = models.detector(head="passthrough")
    coarse = keras.Model(det.input, det.get_layer("act_conv18").output)
    fine = keras.Model(det.input, det.get_layer("pt_stack").output)
    imgs = np.full((2, 224, 224, 3), 200, np.uint8)
    imgs[0, 98:104, 97:103] = 40  # cell (6, 6) spans 96..111 px: blob at its left ...
    imgs[1, 98:104, 105:111] = 40  # ... and at its right
    c, f = coarse(imgs, training=False).numpy(), fine(imgs, training=False).numpy()

    def change(a):
        return float(np.abs(a[0, 6, 6] - a[1, 6, 6]).mean() / (np.abs(a[0, 6, 6]).mean() + 1e-9))

    assert change(f) > change(c)


def test_mixed_bfloat16_detector_trains_in_bfloat16_and_folds_to_float32(tmp_path):
    """Under `precision: mixed` on CPU the convolutions and BatchNorms compute in bfloat16, the
    LeakyReLUs in float32 (TensorFlow's bfloat16 LeakyReLU is slow on CPU), the weights and
    output stay float32, a training step is finite and repeatable to the bit, and the saved
    model folds into a float32 inference model with nearly the same outputs."""
    import keras

    from bloodcell.train import loop

    cfg = loop.TrainConfig("detector", 1, 2, ((1, 1e-3),), 1, anchors=ORIGINAL_ANCHORS,
                           policy="mixed_bfloat16")
    x = tf.random.stateless_uniform((2, 224, 224, 3), seed=(5, 6), maxval=255.0)
    y = tf.zeros((2, 14, 14, models.N_ANCHORS, models.VECTOR))
    weights = []
    try:
        for _ in range(2):
            loop.setup(cfg)
            net = models.detector()
            step = loop.step_fn(net, keras.optimizers.Adam(1e-3), loop.loss_function(cfg))
            assert np.isfinite(float(step(x, y)[0]))
            weights.append(net.get_layer("conv0").get_weights()[0])
        dtypes = {layer.name: layer.compute_dtype for layer in net.layers}
        assert dtypes["conv0"] == dtypes["bn_conv0"] == "bfloat16"
        assert dtypes["act_conv0"] == "float32" and net.output.dtype == "float32"
        assert net.get_layer("conv0").kernel.dtype == "float32"
        net.save(tmp_path / "d.keras")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    np.testing.assert_array_equal(weights[0], weights[1])
    loaded = keras.models.load_model(tmp_path / "d.keras", compile=False, safe_mode=True)
    folded = models.fold_batchnorm(loaded)
    assert {layer.compute_dtype for layer in folded.layers} == {"float32"}
    mixed_out = loaded(x, training=False).numpy()
    np.testing.assert_allclose(folded(x, training=False), mixed_out,
                               atol=0.05 * np.abs(mixed_out).max())
