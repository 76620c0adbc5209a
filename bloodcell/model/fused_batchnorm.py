"""BatchNorm that trains through TensorFlow's fused kernel: the same layer, about a third of a
detector training step cheaper on CPU.

Keras 3's BatchNormalization computes the batch moments and the normalisation as a chain of
element-wise ops (mean, squared difference, rsqrt, multiply, add, and their gradients); on a
2-core CPU they take about a third of a ModifiedYolo training step
(``python benchmarks/step_profile.py``). ``FusedBatchNorm`` is that layer, with the same weights,
names and inference path, whose training-mode forward and backward run as TensorFlow's
``FusedBatchNormV3`` and its gradient (one oneDNN kernel each). The moving statistics follow
Keras 3's rule: the moving variance averages the biased batch variance (the fused kernel
returns the Bessel-corrected one, which is scaled back by (n - 1) / n, n = B x H x W).
Inputs are NHWC; the layer normalises the last axis, as every BatchNorm of ModifiedYolo does.
Under the mixed bfloat16 policy a bfloat16 input is normalised in bfloat16 (the statistics,
scale and offset stay float32): that kernel is faster than float32 and the two casts around it.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="bloodcell")
class FusedBatchNorm(keras.layers.BatchNormalization):
    """keras.layers.BatchNormalization (axis -1, center and scale, no renorm, no mask) whose
    training-mode step runs TensorFlow's fused kernel; elsewhere it is the Keras layer."""

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or len(inputs.shape) != 4:
            return super().call(inputs, training=training, mask=mask)
        x = inputs if inputs.dtype == tf.bfloat16 else tf.cast(inputs, tf.float32)
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32),
            epsilon=self.epsilon, data_format="NHWC", is_training=True)
        n = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.float32)
        biased = variance * (n - 1.0) / n
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + tf.stop_gradient(mean) * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m
                                    + tf.stop_gradient(biased) * (1.0 - m))
        return tf.cast(y, self.compute_dtype)
