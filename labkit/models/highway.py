"""Highway networks (Srivastava, Greff & Schmidhuber, "Training Very Deep Networks", NeurIPS 2015).

Before ResNet, highway networks let information skip layers through a **learned gate**:

    y = H(x) · T(x) + x · (1 − T(x)),     T(x) = sigmoid(W_T x + b_T)

``T`` near 0 carries ``x`` through unchanged, near 1 transforms it. The gate starts closed: b_T
is initialised negative (the paper: −1 to −3), so a deep stack starts close to the identity and
gradients reach the first layers. A residual block is the gate fixed open on both paths,
``y = H(x) + x``: no parameters for the shortcut, and nothing that can shut it. A convolutional
gate costs as much as one more convolution (k·k·C·C + C), which ``gate_parameters`` computes.

``cifar_highway(depth)`` is lab 05's CIFAR network (``labkit.models.cifar_resnet``) with highway
blocks in place of residual ones: the three shortcuts of the degradation experiment side by side
(none, gated, identity).
"""
from __future__ import annotations

import keras
from keras import layers

from labkit.models.cifar_resnet import cifar_network, conv_bn
from labkit.models.layers import HighwayGate

GATE_BIAS = -1.0   # b_T at the start: T = sigmoid(-1) = 0.27, so mostly carried


def gate_parameters(channels: int, kernel: int = 3) -> int:
    """Weights and biases of one convolutional transform gate on ``channels`` channels."""
    return kernel * kernel * channels * channels + channels


def highway_block(x, filters: int, strides: int, name: str, gate_bias: float = GATE_BIAS):
    """H: two 3x3 conv-BN layers (ReLU between and after); T: a 3x3 convolution with a sigmoid,
    from the block's input. Where the shape changes, the carried input is a 1x1 projection."""
    carry = x
    if strides != 1 or x.shape[-1] != filters:
        carry = conv_bn(x, filters, 1, strides, f"{name}_0", relu=False)
    h = conv_bn(x, filters, 3, strides, f"{name}_1")
    h = conv_bn(h, filters, 3, 1, f"{name}_2")
    gate_input = layers.ZeroPadding2D(1, name=f"{name}_gate_pad")(x) if strides > 1 else x
    t = layers.Conv2D(filters, 3, strides=strides, padding="same" if strides == 1 else "valid",
                      activation="sigmoid", bias_initializer=keras.initializers.Constant(gate_bias),
                      name=f"{name}_gate")(gate_input)
    return HighwayGate(name=f"{name}_highway")([h, carry, t])


def cifar_highway(depth: int = 20, num_classes: int = 10, input_shape=(32, 32, 3), gate_bias: float = GATE_BIAS,
                  classifier_activation="softmax") -> keras.Model:
    """The CIFAR network of ``depth`` = 6n + 2 layers with highway blocks."""
    return cifar_network(depth, lambda x, filters, strides, name: highway_block(x, filters, strides, name, gate_bias),
                         f"highway{depth}", num_classes, input_shape, classifier_activation)
