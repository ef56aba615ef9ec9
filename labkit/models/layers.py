"""Layers the papers use that Keras does not ship.

* ``LocalResponseNormalization``: Krizhevsky et al. 2012, section 3.3 (AlexNet), also in
  GoogLeNet's stem and VGG's A-LRN configuration.
* ``Subsampling`` and ``PartialConv2D``: LeCun et al. 1998 (LeNet-5), the S2/S4 layers and C3's
  connection table.
* ``CaffePreprocessing``: the input that ImageNet weights trained in Caffe expect (VGG, ResNet).
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="labkit")
class LocalResponseNormalization(keras.layers.Layer):
    """b = a / (k + alpha * sum over n neighbouring channels of a^2) ** beta.

    Defaults are AlexNet's: k=2, n=5, alpha=1e-4, beta=0.75 (alpha multiplies the plain sum,
    as in the paper's equation; Caffe divides it by n). No trainable weights.

    Written with ``keras.ops`` (the same function as ``tf.nn.local_response_normalization``, on
    every backend and under XLA), and computed in float32 under a mixed-precision policy: a
    sum of squares of activations overflows float16, and GPUs have no float16 LRN kernel.
    """

    def __init__(self, size: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75, **kwargs):
        super().__init__(**kwargs)
        if size % 2 != 1:
            raise ValueError(f"LRN size must be odd (the window is centred on each channel), got {size}")
        self.size, self.k, self.alpha, self.beta = size, k, alpha, beta

    def call(self, x):
        channels = int(x.shape[-1])
        a = ops.cast(x, "float32")
        r = self.size // 2
        squares = ops.pad(ops.square(a), [[0, 0]] * (len(x.shape) - 1) + [[r, r]])
        # sum over the n channels centred on each one (zeros beyond the first and last)
        window = sum(squares[..., i:i + channels] for i in range(self.size))
        return ops.cast(a / ops.power(self.k + self.alpha * window, self.beta), x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "size": self.size, "k": self.k, "alpha": self.alpha, "beta": self.beta}


@keras.saving.register_keras_serializable(package="labkit")
def scaled_tanh(x):
    """LeNet-5's squashing function f(a) = 1.7159 tanh(2a/3) (LeCun et al. 1998, appendix A)."""
    return 1.7159 * ops.tanh(x * (2.0 / 3.0))


@keras.saving.register_keras_serializable(package="labkit")
class Subsampling(keras.layers.Layer):
    """LeNet-5's S2/S4: the sum of each 2x2 block times a trainable coefficient, plus a trainable
    bias, per feature map (2 parameters per map), then the activation."""

    def __init__(self, pool_size: int = 2, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = pool_size
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.coefficient = self.add_weight(shape=(channels,), initializer="ones", name="coefficient")
        self.bias = self.add_weight(shape=(channels,), initializer="zeros", name="bias")

    def call(self, x):
        p = self.pool_size
        summed = ops.average_pool(x, p, strides=p, padding="valid") * float(p * p)
        return self.activation(summed * self.coefficient + self.bias)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        p = self.pool_size
        return (b, None if h is None else h // p, None if w is None else w // p, c)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size,
                "activation": keras.activations.serialize(self.activation)}


#: LeNet-5's C3 connection table (LeCun et al. 1998, Table I): which S2 maps feed each C3 map.
LENET_C3_TABLE = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)


@keras.saving.register_keras_serializable(package="labkit")
class PartialConv2D(keras.layers.Layer):
    """A 'valid' convolution in which output map j sees only the input maps ``table[j]``.

    Only the connected kernels are weights (C3: 60 connections x 25 + 16 biases = 1,516), so
    ``count_params()`` matches the paper. LeCun's reasons: fewer connections, and broken symmetry
    makes different maps extract different features.
    """

    def __init__(self, kernel_size: int, table=LENET_C3_TABLE, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = kernel_size
        self.table = tuple(tuple(int(i) for i in row) for row in table)
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        self.in_channels = int(input_shape[-1])
        pairs = [(i, j) for j, row in enumerate(self.table) for i in row]
        if max(i for i, _ in pairs) >= self.in_channels:
            raise ValueError(f"connection table refers to input map {max(i for i, _ in pairs)}, "
                             f"but the input has {self.in_channels} maps")
        self.indices = np.array(pairs, dtype="int32")
        k, n = self.kernel_size, len(pairs)
        fan_in = k * k * n / len(self.table)
        self.kernel = self.add_weight(shape=(n, k, k), name="kernel",
                                      initializer=keras.initializers.RandomUniform(-2.4 / fan_in, 2.4 / fan_in))
        self.bias = self.add_weight(shape=(len(self.table),), initializer="zeros", name="bias")

    def call(self, x):
        k = self.kernel_size
        full = ops.scatter(self.indices, self.kernel, (self.in_channels, len(self.table), k, k))
        full = ops.transpose(full, (2, 3, 0, 1))  # (k, k, in, out) as conv expects
        y = ops.conv(x, ops.cast(full, x.dtype), strides=1, padding="valid") + ops.cast(self.bias, x.dtype)
        return self.activation(y)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        k = self.kernel_size
        return (b, None if h is None else h - k + 1, None if w is None else w - k + 1, len(self.table))

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "table": self.table,
                "activation": keras.activations.serialize(self.activation)}


@keras.saving.register_keras_serializable(package="labkit")
class CaffePreprocessing(keras.layers.Layer):
    """RGB -> BGR, then subtract ImageNet's mean pixel (103.939, 116.779, 123.68) on the 0-255
    scale, no division: what VGG and ResNet v1 weights trained in Caffe expect, the same as
    ``keras.applications.vgg16.preprocess_input`` (``mode="caffe"``). ``input_range`` is the
    value of white in the input: 255 for uint8-like images, 1 for images scaled to [0, 1]."""

    BGR_MEAN = (103.939, 116.779, 123.68)

    def __init__(self, input_range: float = 255.0, **kwargs):
        super().__init__(**kwargs)
        self.input_range = float(input_range)

    def call(self, x):
        x = ops.cast(x, self.compute_dtype) * (255.0 / self.input_range)
        return ops.flip(x, axis=-1) - ops.convert_to_tensor(self.BGR_MEAN, dtype=self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "input_range": self.input_range}


@keras.saving.register_keras_serializable(package="labkit")
class HighwayGate(keras.layers.Layer):
    """Srivastava, Greff & Schmidhuber 2015: ``y = H(x) * T(x) + x * (1 - T(x))``, called on
    ``[h, carry, t]``. No weights: the transform gate ``t`` (a sigmoid in (0, 1)) is computed by the
    layer before it (``labkit.models.highway``)."""

    def call(self, inputs):
        h, carry, t = inputs
        return h * t + carry * (1.0 - t)
