"""Training: targets, loss, the tf.data input pipeline, the loop, checkpoints and the
train commands."""
