"""EfficientNet (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019).

**B0**, found by architecture search, is a stack of MBConv blocks (MobileNetV2's inverted
residual with squeeze-and-excitation): a 1x1 convolution expands the channels ``e`` times, a
depthwise kxk convolution filters each channel on its own, SE reweighs the channels, a 1x1
convolution projects back to few channels (no activation), and the input is added where the
shape allows. Swish (x·sigmoid(x)) everywhere. The paper's Table 1 is ``B0`` below.

**Compound scaling** makes B1-B7 from B0: depth × α^φ, width × β^φ, resolution × γ^φ, with
α = 1.2, β = 1.1, γ = 1.15 found by a grid search at φ = 1 under α·β²·γ² ≈ 2 (each step of φ
about doubles the operations: depth costs linearly, width and resolution quadratically).
``compound_scaling(phi)`` computes the rule. The published B1-B7 (``SCALED``, from the paper's
code, which ``keras.applications`` copies) round the coefficients by hand: they are close to
the rule, not equal to it (``labkit.models.efficientnet.implied_phi``).

Layers as ``keras.applications.EfficientNetB0`` (``block2a_expand_conv``, ``block6d_se_reduce``,
... ``top_conv``); strided layers pad as TensorFlow's "same" (one pixel less before than after on
an even input), as the paper's TensorFlow models were trained. labkit's network starts after
Keras' input rescaling and normalisation: ``keras.applications.EfficientNetB0(x * 255)``
computes ``efficientnet("b0")(x)`` exactly with the same weights (tested). Trainable parameters
at 224x224x3 and 1000 classes: B0 5,288,548.
"""
from __future__ import annotations

import math

import keras
from keras import layers

from labkit.models._common import check_input_shape, check_num_classes, classifier_output
from labkit.models.senet import squeeze_excite

# B0 (the paper's Table 1), stages 2-8: (expansion e, kernel k, stride, output channels, layers)
B0 = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]
STEM, TOP = 32, 1280         # stage 1's 3x3 conv and stage 9's 1x1 conv
SE_RATIO = 0.25              # SE squeezes to a quarter of the block's *input* channels
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15   # depth, width, resolution per unit of φ
# the published models: (width coefficient, depth coefficient, resolution, dropout)
SCALED = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}
DIVISOR = 8                  # channels are rounded to multiples of 8
DROP_CONNECT = 0.2           # stochastic depth: a block's residual branch is dropped with up to this rate
BN = dict(momentum=0.99, epsilon=1e-3)   # TensorFlow's, as the paper's models
MIN_INPUT_SIZE = 32
CONV_INIT = keras.initializers.VarianceScaling(2.0, "fan_out", "truncated_normal")
DENSE_INIT = keras.initializers.VarianceScaling(1.0 / 3.0, "fan_out", "uniform")


def compound_scaling(phi: float) -> dict:
    """The rule for compound coefficient ``phi``: depth α^φ, width β^φ, resolution 224·γ^φ, and
    the operations it multiplies, (α·β²·γ²)^φ ≈ 2^φ."""
    return {"depth": ALPHA ** phi, "width": BETA ** phi, "resolution": 224 * GAMMA ** phi,
            "flops": (ALPHA * BETA ** 2 * GAMMA ** 2) ** phi}


def implied_phi(variant: str) -> dict:
    """For a published model, the φ that each of its three coefficients corresponds to: equal
    if the model followed the rule exactly."""
    width, depth, resolution, _ = SCALED[variant]
    return {"depth": math.log(depth) / math.log(ALPHA), "width": math.log(width) / math.log(BETA),
            "resolution": math.log(resolution / 224) / math.log(GAMMA)}


def round_filters(channels: int, width: float) -> int:
    """``channels`` × ``width``, to the nearest multiple of 8, never more than 10% below."""
    scaled = channels * width
    rounded = max(DIVISOR, int(scaled + DIVISOR / 2) // DIVISOR * DIVISOR)
    return int(rounded + DIVISOR if rounded < 0.9 * scaled else rounded)


def round_repeats(repeats: int, depth: float) -> int:
    """``repeats`` × ``depth``, rounded up."""
    return int(math.ceil(depth * repeats))


def _same_padding(x, kernel: int, name: str):
    """TensorFlow's 'same' padding of a stride-2 layer, explicit: k // 2 after, one less before
    on an even input."""
    size = x.shape[1:3]
    before = [kernel // 2 - (1 - s % 2) for s in size]
    return layers.ZeroPadding2D(((before[0], kernel // 2), (before[1], kernel // 2)), name=name)(x)


def _conv_bn(x, filters, name, activation="swish"):
    """1x1 convolution (no bias), batch norm, then ``activation`` if any."""
    x = layers.Conv2D(filters, 1, padding="same", use_bias=False, kernel_initializer=CONV_INIT,
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(**BN, name=f"{name}_bn")(x)
    return layers.Activation(activation, name=f"{name}_activation")(x) if activation else x


def mbconv(x, filters_out: int, expansion: int, kernel: int, strides: int, name: str, drop_rate: float = 0.0):
    """An MBConv block: expand (1x1, ``expansion`` x), depthwise ``kernel`` x ``kernel``, SE,
    project (1x1, linear), and the input added where stride and channels allow (with stochastic
    depth ``drop_rate`` in training)."""
    filters_in = int(x.shape[-1])
    inputs = x
    filters = filters_in * expansion
    if expansion != 1:
        x = _conv_bn(x, filters, f"{name}expand")
    if strides == 2:
        x = _same_padding(x, kernel, f"{name}dwconv_pad")
    x = layers.DepthwiseConv2D(kernel, strides=strides, padding="same" if strides == 1 else "valid", use_bias=False,
                               depthwise_initializer=CONV_INIT, name=f"{name}dwconv")(x)
    x = layers.BatchNormalization(**BN, name=f"{name}bn")(x)
    x = layers.Activation("swish", name=f"{name}activation")(x)
    x = squeeze_excite(x, max(1, int(filters_in * SE_RATIO)), activation="swish", name=f"{name}se",
                       kernel_initializer=CONV_INIT)
    x = _conv_bn(x, filters_out, f"{name}project", activation=None)
    if strides == 1 and filters_in == filters_out:
        if drop_rate > 0:
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}drop")(x)
        x = layers.Add(name=f"{name}add")([x, inputs])
    return x


def efficientnet(variant: str = "b0", num_classes: int = 1000, input_shape=None,
                 classifier_activation="softmax") -> keras.Model:
    """EfficientNet-``variant`` ("b0" .. "b7"), B0 scaled by the published coefficients; the
    input defaults to the variant's resolution (224 for B0, 600 for B7)."""
    if variant not in SCALED:
        raise ValueError(f"EfficientNet variant must be one of {', '.join(SCALED)}, got {variant!r}")
    width, depth, resolution, dropout = SCALED[variant]
    input_shape = tuple(input_shape or (resolution, resolution, 3))
    check_num_classes(num_classes)
    check_input_shape(input_shape, MIN_INPUT_SIZE, f"EfficientNet-{variant.upper()}")
    inputs = keras.Input(shape=input_shape, name="input")
    x = _same_padding(inputs, 3, "stem_conv_pad")
    x = layers.Conv2D(round_filters(STEM, width), 3, strides=2, use_bias=False, kernel_initializer=CONV_INIT,
                      name="stem_conv")(x)
    x = layers.BatchNormalization(**BN, name="stem_bn")(x)
    x = layers.Activation("swish", name="stem_activation")(x)
    total = sum(round_repeats(n, depth) for *_, n in B0)
    done = 0
    for stage, (expansion, kernel, strides, channels, n) in enumerate(B0, start=1):
        for j in range(round_repeats(n, depth)):
            x = mbconv(x, round_filters(channels, width), expansion, kernel, strides if j == 0 else 1,
                       name=f"block{stage}{chr(ord('a') + j)}_", drop_rate=DROP_CONNECT * done / total)
            done += 1
    x = _conv_bn(x, round_filters(TOP, width), "top")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(dropout, name="top_dropout")(x)
    outputs = classifier_output(x, num_classes, "fc", classifier_activation, kernel_initializer=DENSE_INIT)
    return keras.Model(inputs, outputs, name=f"efficientnet{variant}")
