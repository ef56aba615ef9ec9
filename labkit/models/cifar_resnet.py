"""The CIFAR-10 networks of He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016),
section 4.2: the experiment that shows **degradation**. A plain network of 56 layers trains to a
*higher* training error than one of 20; with shortcuts, the deeper one is the better.

    depth = 6n + 2 weight layers (20: n = 3, 56: n = 9)
    conv 3x3, 16 filters                         32x32x16 (at 32 px; labkit trains it at 64)
    stage 1: n blocks of two 3x3 convs, 16       32x32x16
    stage 2: n blocks, 32 filters, the first /2  16x16x32
    stage 3: n blocks, 64 filters, the first /2   8x8x64
    global average pooling, fully connected, softmax

Every convolution is followed by batch norm; ReLU after each BN, except that a residual block
adds its shortcut before the last ReLU. ``residual=False`` is the *plain* network: the same
layers without the shortcuts. Where a block halves the size and doubles the channels, the
shortcut is a 1x1 convolution with stride 2 and BN (the paper's option B; on CIFAR it used option
A, zero-padded identity shortcuts, which add no parameters). A strided 3x3 pads 1 on every side.
ResNet-20 has 0.27 M parameters and ResNet-56 0.86 M (the paper, option A: 0.27 M and 0.85 M).
"""
from __future__ import annotations

import keras
from keras import layers

from labkit.models._common import check_input_shape, check_num_classes, classifier_output

WIDTHS = (16, 32, 64)
MIN_INPUT_SIZE = 8  # two stride-2 stages
# the moving statistics follow the weights within an epoch of 20 steps (Keras' default, 0.99,
# needs hundreds: validation in inference mode then lags far behind training)
BN = dict(momentum=0.9, epsilon=1e-5)


def blocks_per_stage(depth: int) -> int:
    """n for a network of ``depth`` = 6n + 2 weight layers."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has 6n + 2 layers (8, 14, 20, 32, 44, 56, 110 ...), got {depth!r}")
    return (depth - 2) // 6


def conv_bn(x, filters: int, kernel: int, strides: int, name: str, relu: bool = True):
    if strides > 1 and kernel > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same" if strides == 1 else "valid",
                      use_bias=False, kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(**BN, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def block(x, filters: int, strides: int, residual: bool, name: str):
    """Two 3x3 conv-BN layers; with ``residual``, the shortcut is added before the last ReLU."""
    y = conv_bn(x, filters, 3, strides, f"{name}_1")
    y = conv_bn(y, filters, 3, 1, f"{name}_2", relu=not residual)
    if not residual:
        return y
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = conv_bn(x, filters, 1, strides, f"{name}_0", relu=False)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def cifar_network(depth: int, block, name: str, num_classes: int = 10, input_shape=(32, 32, 3),
                  classifier_activation="softmax") -> keras.Model:
    """The CIFAR layout for ``depth`` = 6n + 2 layers: the 3x3 stem, three stages of n blocks
    (``block(x, filters, strides, name)``, the first of stages 2 and 3 halving the size), global
    average pooling, the classifier."""
    n = blocks_per_stage(depth)
    check_num_classes(num_classes)
    check_input_shape(input_shape, MIN_INPUT_SIZE, f"CIFAR {name}")
    inputs = keras.Input(shape=input_shape, name="input")
    x = conv_bn(inputs, WIDTHS[0], 3, 1, "conv1")
    for stage, width in enumerate(WIDTHS, start=1):
        for b in range(1, n + 1):
            x = block(x, width, 2 if (b == 1 and stage > 1) else 1, f"stage{stage}_block{b}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = classifier_output(x, num_classes, "fc", classifier_activation)
    return keras.Model(inputs, outputs, name=f"{name}_cifar")


def cifar_resnet(depth: int = 20, residual: bool = True, num_classes: int = 10, input_shape=(32, 32, 3),
                 classifier_activation="softmax") -> keras.Model:
    """ResNet-``depth`` for CIFAR (``residual=True``), or the plain network of the same depth."""
    return cifar_network(depth, lambda x, filters, strides, name: block(x, filters, strides, residual, name),
                         f"{'resnet' if residual else 'plain'}{depth}", num_classes, input_shape,
                         classifier_activation)
