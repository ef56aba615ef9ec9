"""ResNeXt (Xie, Girshick, Dollár, Tu & He, "Aggregated Residual Transformations for Deep Neural
Networks", CVPR 2017).

A ResNeXt block splits ResNet's bottleneck into ``C`` parallel paths (the **cardinality**), each
a 1x1 -> 3x3 -> 1x1 of width ``d``, and sums them. With grouped convolutions that is one
bottleneck whose 1x1 and 3x3 are ``C * d`` channels wide and whose 3x3 is split into ``C``
groups: each group sees only its ``d`` input channels, so the 3x3 costs ``C`` times less than a
dense one of the same width. "32x4d" is ``C = 32`` paths of ``d = 4`` channels in the first
stage (128 wide where ResNet-50's bottleneck is 64); widths double with every stage.

    conv1 7x7/2 64 -> max-pool 3x3/2 -> conv2 .. conv5 (ResNeXt blocks) -> global average pool -> fc

The paper's (Table 1) and torchvision's form: downsampling in the 3x3 of each stage's first block,
projection shortcuts where the shape changes, and layers named as labkit's ResNet. Trainable
parameters at 224x224x3 and 1000 classes: ResNeXt-50 32x4d 25,028,904 (torchvision's
``resnext50_32x4d``), ResNeXt-101 32x8d 88,791,336.

Equal complexity (the paper's Figure 1 and Table 2): a block of cardinality C and width d has
C·(256·d + 3·3·d·d + d·256) parameters; 32x4d gives 70k, ResNet's 64-wide bottleneck 70k too.
``block_parameters`` computes it.
"""
from __future__ import annotations

import keras
from keras import layers

from labkit.models import resnet as _resnet
from labkit.models._common import check_input_shape, check_num_classes, classifier_output

# name: (blocks per stage conv2..conv5, cardinality C, width of one path d in conv2)
CONFIGS = {
    "50_32x4d": ([3, 4, 6, 3], 32, 4),
    "101_32x8d": ([3, 4, 23, 3], 32, 8),
    "101_32x4d": ([3, 4, 23, 3], 32, 4),
    "101_64x4d": ([3, 4, 23, 3], 64, 4),
}
EXPANSION = 4         # a block's output: 4x ResNet's base width (256, 512, 1024, 2048), as ResNet-50
MIN_INPUT_SIZE = 32


def block_parameters(cardinality: int, width: int, channels: int = 256) -> int:
    """Weights of one block's paths (no BN, no shortcut), input and output ``channels``: C paths of
    ``channels -> d`` (1x1), ``d -> d`` (3x3), ``d -> channels`` (1x1). The paper's Figure 1
    compares 32x4d with ResNet's 1x64d at ``channels=256``: about 70k each."""
    return cardinality * (channels * width + 9 * width * width + width * channels)


def resnext_block(x, filters: int, strides: int, cardinality: int, width: int, name: str,
                  zero_init_residual: bool = True):
    """One ResNeXt block: 1x1 to ``C * d`` channels, grouped 3x3 (``C`` groups, stride here), 1x1
    to ``4 * filters``; projection shortcut when the shape changes; ReLU after the addition.
    ``width`` is ``d`` at ``filters = 64`` and scales with ``filters``."""
    inner = cardinality * width * filters // 64
    out_channels = EXPANSION * filters
    shortcut = x
    if strides != 1 or x.shape[-1] != out_channels:
        shortcut = _resnet.conv(x, out_channels, 1, strides, f"{name}_0_conv")
        shortcut = layers.BatchNormalization(**_resnet.BN, name=f"{name}_0_bn")(shortcut)
    y = _resnet.bn_relu(_resnet.conv(x, inner, 1, 1, f"{name}_1_conv"), f"{name}_1")
    if strides > 1:
        y = layers.ZeroPadding2D(1, name=f"{name}_2_pad")(y)
    y = layers.Conv2D(inner, 3, strides=strides, padding="same" if strides == 1 else "valid",
                      groups=cardinality, use_bias=False, kernel_initializer="he_normal", name=f"{name}_2_conv")(y)
    y = _resnet.bn_relu(y, f"{name}_2")
    y = _resnet.conv(y, out_channels, 1, 1, f"{name}_3_conv")
    y = _resnet.bn_relu(y, f"{name}_3", relu=False, zero_gamma=zero_init_residual)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def resnext(config: str = "50_32x4d", num_classes: int = 1000, input_shape=(224, 224, 3),
            zero_init_residual: bool = True, classifier_activation="softmax") -> keras.Model:
    """ResNeXt-``config`` (``CONFIGS``: "50_32x4d", "101_32x8d", ...)."""
    if config not in CONFIGS:
        raise ValueError(f"ResNeXt configuration must be one of {', '.join(CONFIGS)}, got {config!r}")
    check_num_classes(num_classes)
    check_input_shape(input_shape, MIN_INPUT_SIZE, f"ResNeXt-{config}")
    blocks, cardinality, width = CONFIGS[config]
    inputs = keras.Input(shape=input_shape, name="input")
    x = _resnet.bn_relu(_resnet.conv(inputs, 64, 7, 2, "conv1_conv"), "conv1")
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for stage, (filters, count) in enumerate(zip(_resnet.WIDTHS, blocks), start=2):
        for b in range(1, count + 1):
            strides = 2 if (b == 1 and stage > 2) else 1
            x = resnext_block(x, filters, strides, cardinality, width, f"conv{stage}_block{b}", zero_init_residual)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = classifier_output(x, num_classes, "fc", classifier_activation)
    return keras.Model(inputs, outputs, name=f"resnext{config}")
