"""ResNet (He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016) and
its pre-activation form (He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016).

A residual block learns F(x) and outputs F(x) + x: if the identity is what a layer should do,
F only has to go to zero, which is why very deep ResNets train where plain nets degrade.

    conv1 7x7/2 64 -> max-pool 3x3/2 -> conv2_x -> conv3_x -> conv4_x -> conv5_x
    -> global average pool -> fc (softmax)

Stages conv2_x..conv5_x have 64, 128, 256, 512 base filters; conv3_1, conv4_1 and conv5_1
downsample with stride 2 (in the first convolution of the block, as in the paper and Caffe; the
bottleneck's first 1x1, as in keras.applications, not torchvision's "v1.5" 3x3). Every strided
layer pads symmetrically, as the original Caffe models did: conv1 pads 3, pool1 pads 1, a strided
3x3 pads 1. So the v1 networks compute exactly ``keras.applications.ResNet50/101/152``: copy their
weights with ``labkit.models.port_weights`` (tested to 1e-5). Where the
shape changes the shortcut is a 1x1 projection (option B). Convolutions have no bias (batch norm
follows each). Trainable parameters at 224x224x3, 1000 classes: 18: 11,689,512; 34: 21,797,672;
50: 25,557,032; 101: 44,549,160; 152: 60,192,808.

``version=1``: conv -> BN -> ReLU, addition, then ReLU (post-activation).
``version=2``: BN -> ReLU -> conv inside the block, nothing after the addition (full
pre-activation, the best variant of the 2016 comparison table), plus a final BN -> ReLU.

How labkit's v2 differs from ``keras.applications.ResNet50V2``, by design (so no ImageNet
weights port to it): labkit downsamples in the first block of a stage, as v1 and the paper do;
Keras strides in the last block, with a 1x1 max-pool shortcut. labkit's stem is conv-BN-ReLU-pool
and the first block uses that activation; Keras' stem conv has a bias and no BN, and the first
block pre-activates after the pool. labkit's convolutions have no bias (BN follows each).
"""
from __future__ import annotations

import keras
from keras import layers

from labkit.models._common import check_input_shape, check_num_classes, classifier_output
from labkit.models.senet import squeeze_excite

# depth: (block, blocks per stage conv2_x..conv5_x)
DEPTHS = {
    18: ("basic", [2, 2, 2, 2]),
    34: ("basic", [3, 4, 6, 3]),
    50: ("bottleneck", [3, 4, 6, 3]),
    101: ("bottleneck", [3, 4, 23, 3]),
    152: ("bottleneck", [3, 8, 36, 3]),
}
WIDTHS = [64, 128, 256, 512]
EXPANSION = {"basic": 1, "bottleneck": 4}
MIN_INPUT_SIZE = 32  # total stride 32
BN = dict(momentum=0.9, epsilon=1e-5)


def conv(x, filters, kernel, strides, name, kernel_initializer="he_normal"):
    """A convolution without bias, its kernel drawn by ``kernel_initializer`` (the paper's He
    normal). At stride 1 'same' padding is symmetric (kernel // 2 each
    side). At stride 2 TensorFlow's 'same' pads less before than after ((2, 3) for 7x7 on an
    even input), so a strided kxk convolution pads ``k // 2`` on every side explicitly, then runs
    'valid', as Caffe, torchvision and keras.applications do. A 1x1 convolution needs no padding."""
    padding = "same"
    if strides > 1:
        padding = "valid"
        if kernel > 1:
            x = layers.ZeroPadding2D(kernel // 2, name=name.removesuffix("_conv") + "_pad")(x)
    return layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False,
                         kernel_initializer=kernel_initializer, name=name)(x)


def bn_relu(x, name, relu=True, zero_gamma=False):
    x = layers.BatchNormalization(**BN, gamma_initializer="zeros" if zero_gamma else "ones", name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def residual_block(x, filters: int, strides: int, kind: str, name: str, zero_init_residual: bool = True,
                   se_ratio: int | None = None, kernel_initializer="he_normal"):
    """v1 block: basic (3x3, 3x3) or bottleneck (1x1, 3x3, 1x1 x4); projection shortcut when
    the shape changes; ReLU after the addition. ``zero_init_residual``: the residual branch's
    last BN starts with gamma = 0, so the block starts as the identity (Goyal et al. 2017).
    ``se_ratio``: squeeze-and-excitation on the residual branch before the addition (SE-ResNet,
    ``labkit.models.senet``)."""
    out_channels = filters * EXPANSION[kind]
    shortcut = x
    if strides != 1 or x.shape[-1] != out_channels:
        shortcut = conv(x, out_channels, 1, strides, f"{name}_0_conv", kernel_initializer)
        shortcut = layers.BatchNormalization(**BN, name=f"{name}_0_bn")(shortcut)
    if kind == "basic":
        convs = [(filters, 3, strides), (out_channels, 3, 1)]
    else:
        convs = [(filters, 1, strides), (filters, 3, 1), (out_channels, 1, 1)]
    for i, (f, k, s) in enumerate(convs, start=1):
        x = conv(x, f, k, s, f"{name}_{i}_conv", kernel_initializer)
        last = i == len(convs)
        x = bn_relu(x, f"{name}_{i}", relu=not last, zero_gamma=last and zero_init_residual)
    if se_ratio:
        x = squeeze_excite(x, max(1, int(x.shape[-1]) // se_ratio), name=f"{name}_se")
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.ReLU(name=f"{name}_out")(x)


def preact_block(x, filters: int, strides: int, kind: str, name: str, preactivated: bool = False,
                 kernel_initializer="he_normal"):
    """v2 block: BN-ReLU-conv units; the shortcut is the identity, or a projection of the
    pre-activated input when the shape changes. ``preactivated``: the input is already BN-ReLU'd
    (the first block after the stem)."""
    out_channels = filters * EXPANSION[kind]
    preact = x if preactivated else bn_relu(x, f"{name}_preact")
    shortcut = x
    if strides != 1 or x.shape[-1] != out_channels:
        shortcut = conv(preact, out_channels, 1, strides, f"{name}_0_conv", kernel_initializer)
    if kind == "basic":
        convs = [(filters, 3, strides), (out_channels, 3, 1)]
    else:
        convs = [(filters, 1, strides), (filters, 3, 1), (out_channels, 1, 1)]
    y = preact
    for i, (f, k, s) in enumerate(convs, start=1):
        if i > 1:
            y = bn_relu(y, f"{name}_{i - 1}")
        y = conv(y, f, k, s, f"{name}_{i}_conv", kernel_initializer)
    return layers.Add(name=f"{name}_out")([shortcut, y])


def resnet(depth: int = 50, num_classes: int = 1000, input_shape=(224, 224, 3), version: int = 1,
           zero_init_residual: bool = True, classifier_activation="softmax", se_ratio: int | None = None,
           kernel_initializer="he_normal") -> keras.Model:
    """ResNet-``depth`` (18, 34, 50, 101, 152), post-activation (``version=1``) or
    full pre-activation (``version=2``). ``zero_init_residual`` (v1) starts every residual
    branch at zero, which keeps very deep nets trainable from the first step; it changes the
    initial values only, not the architecture. ``se_ratio`` (v1): SE-ResNet, a
    squeeze-and-excitation block with reduction ``se_ratio`` (the paper's 16) in every block.
    ``kernel_initializer``: the convolutions' initial kernels, He normal as in the paper; with
    ``"glorot_uniform"`` and ``zero_init_residual=False`` the network starts from Keras' defaults,
    as a network written with plain Keras layers does (lab 05's)."""
    if se_ratio is not None and (version != 1 or not isinstance(se_ratio, int) or se_ratio < 1):
        raise ValueError(f"se_ratio must be a positive whole number (the SE paper's 16), for version 1; "
                         f"got se_ratio={se_ratio!r}, version={version!r}")
    if depth not in DEPTHS:
        raise ValueError(f"ResNet depth must be one of {', '.join(map(str, DEPTHS))}, got {depth!r}")
    if version not in (1, 2):
        raise ValueError(f"ResNet version must be 1 (post-activation) or 2 (pre-activation), got {version!r}")
    check_num_classes(num_classes)
    check_input_shape(input_shape, MIN_INPUT_SIZE, f"ResNet-{depth}")
    kind, blocks = DEPTHS[depth]
    inputs = keras.Input(shape=input_shape, name="input")
    x = conv(inputs, 64, 7, 2, "conv1_conv", kernel_initializer)
    x = bn_relu(x, "conv1")
    # 3x3/2 max-pool with one pixel on every side. Zeros act as -inf would: the input is a ReLU's.
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for stage, (width, count) in enumerate(zip(WIDTHS, blocks), start=2):
        for b in range(1, count + 1):
            strides = 2 if (b == 1 and stage > 2) else 1
            name = f"conv{stage}_block{b}"
            if version == 1:
                x = residual_block(x, width, strides, kind, name, zero_init_residual, se_ratio, kernel_initializer)
            else:
                x = preact_block(x, width, strides, kind, name, preactivated=(stage == 2 and b == 1),
                                 kernel_initializer=kernel_initializer)
    if version == 2:
        x = bn_relu(x, "post")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = classifier_output(x, num_classes, "fc", classifier_activation)
    prefix = "se_" if se_ratio else ""
    return keras.Model(inputs, outputs, name=f"{prefix}resnet{depth}{'_v2' if version == 2 else ''}")
