"""DenseNet (Huang, Liu, van der Maaten & Weinberger, "Densely Connected Convolutional Networks",
CVPR 2017), the DenseNet-BC form of its ImageNet table.

Inside a dense block every layer receives the feature maps of *all* layers before it,
concatenated, and adds ``k`` (the growth rate) new ones: after ``l`` layers a block holds
``k0 + l * k`` channels. Each layer is BN-ReLU-1x1 conv (4k channels, the bottleneck "B") then
BN-ReLU-3x3 conv (k channels). Between blocks a transition halves the channels (compression
θ = 0.5, the "C"; deck 003 writes it as a division by 2) with a 1x1 convolution and halves the
resolution with 2x2 average pooling.

    conv1 7x7/2 (2k) -> max-pool 3x3/2 -> dense block 1 -> transition 1 -> dense block 2
    -> transition 2 -> dense block 3 -> transition 3 -> dense block 4 -> BN-ReLU
    -> global average pool -> fc (softmax)

Names as ``keras.applications.DenseNet121/169/201``: blocks ``conv2`` .. ``conv5``, layers
``conv3_block7``, transitions ``pool2`` .. ``pool4``. The networks compute exactly Keras'
(tested by copying its weights), so its ImageNet weights load. Trainable parameters at
224x224x3, 1000 classes: 121: 7,978,856; 169: 14,149,480; 201: 20,013,928; 161: 28,681,000.
"""
from __future__ import annotations

import keras
from keras import layers

from labkit.models._common import check_input_shape, check_num_classes, classifier_output

# depth: (growth rate k, layers per dense block, channels of the stem)
CONFIGS = {
    121: (32, [6, 12, 24, 16], 64),
    169: (32, [6, 12, 32, 32], 64),
    201: (32, [6, 12, 48, 32], 64),
    161: (48, [6, 12, 36, 24], 96),
}
BOTTLENECK = 4        # the 1x1 convolution's channels, in units of k
COMPRESSION = 0.5     # θ: a transition keeps this share of the channels
MIN_INPUT_SIZE = 32   # total stride 32
BN = dict(epsilon=1.001e-5)   # keras.applications' (and Caffe's DenseNet) batch norm


def _bn_relu(x, name):
    x = layers.BatchNormalization(**BN, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def dense_layer(x, growth_rate: int, name: str):
    """One layer of a dense block: BN-ReLU-1x1 conv (4k), BN-ReLU-3x3 conv (k), and the k new
    maps concatenated to everything before them."""
    y = _bn_relu(x, f"{name}_0")
    y = layers.Conv2D(BOTTLENECK * growth_rate, 1, use_bias=False, name=f"{name}_1_conv")(y)
    y = _bn_relu(y, f"{name}_1")
    y = layers.Conv2D(growth_rate, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(y)
    return layers.Concatenate(name=f"{name}_concat")([x, y])


def dense_block(x, count: int, growth_rate: int, name: str):
    """``count`` dense layers: the channels grow from C to C + count * k."""
    for i in range(1, count + 1):
        x = dense_layer(x, growth_rate, f"{name}_block{i}")
    return x


def transition(x, name: str, compression: float = COMPRESSION):
    """BN-ReLU-1x1 conv to ``compression`` times the channels, then 2x2 average pooling."""
    x = _bn_relu(x, name)
    x = layers.Conv2D(int(x.shape[-1] * compression), 1, use_bias=False, name=f"{name}_conv")(x)
    return layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def densenet(depth: int = 121, num_classes: int = 1000, input_shape=(224, 224, 3),
             classifier_activation="softmax") -> keras.Model:
    """DenseNet-``depth`` (121, 169, 201, 161)."""
    if depth not in CONFIGS:
        raise ValueError(f"DenseNet depth must be one of {', '.join(map(str, CONFIGS))}, got {depth!r}")
    check_num_classes(num_classes)
    check_input_shape(input_shape, MIN_INPUT_SIZE, f"DenseNet-{depth}")
    growth_rate, blocks, stem = CONFIGS[depth]
    inputs = keras.Input(shape=input_shape, name="input")
    x = layers.ZeroPadding2D(3, name="zero_padding2d")(inputs)      # symmetric, as Caffe and Keras
    x = layers.Conv2D(stem, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = _bn_relu(x, "conv1")
    x = layers.ZeroPadding2D(1, name="zero_padding2d_1")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for stage, count in enumerate(blocks, start=2):
        x = dense_block(x, count, growth_rate, f"conv{stage}")
        if stage < len(blocks) + 1:
            x = transition(x, f"pool{stage}")
    x = layers.BatchNormalization(**BN, name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = classifier_output(x, num_classes, "fc", classifier_activation)
    return keras.Model(inputs, outputs, name=f"densenet{depth}")
