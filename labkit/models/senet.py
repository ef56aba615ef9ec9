"""Squeeze-and-excitation (Hu, Shen, Albanie, Sun & Wu, "Squeeze-and-Excitation Networks", CVPR
2018 / TPAMI 2020).

A convolution mixes channels only through its learned kernel, at every position alike. An SE block
lets the network reweigh its channels from the whole image: it **squeezes** each channel to one
number (global average pooling), **excites** with two fully connected layers (C -> C/r with ReLU,
C/r -> C with a sigmoid), and **scales** every channel by its weight in (0, 1).

    x (H x W x C) -> global average pool (C) -> fc C/r, ReLU -> fc C, sigmoid -> x * s

SE-ResNet puts one in every residual block, on the branch before the addition
(``labkit.models.resnet.resnet(se_ratio=16)``, ``build("se_resnet50")``: C/16 channels). Its cost is the two
fully connected layers: 2C²/r weights (and C/r + C biases) per block. The paper's formula
(eq. 5), (2/r) Σ_s N_s C_s², gives 2,514,944 extra weights for ResNet-50 (~2.5 million, "a ~10%
increase"): SE-ResNet-50 has 28,088,024 trainable parameters with the biases (ResNet-50:
25,557,032), against the paper's 28.1 M.
"""
from __future__ import annotations

from keras import layers

REDUCTION = 16   # r: the paper's choice (its Table 10: 16 balances accuracy and cost)


def squeeze_excite(x, reduced: int, activation: str = "relu", name: str = "se",
                   kernel_initializer="glorot_uniform"):
    """Reweigh ``x``'s channels by a gate computed from the whole image: squeeze (global average
    pool), excite (fc to ``reduced`` channels + ``activation``, fc back + sigmoid), scale. The
    fully connected layers are 1x1 convolutions on the squeezed 1x1 map (the same weights and
    function), as in the TensorFlow models of EfficientNet, so that their weights port."""
    channels = int(x.shape[-1])
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = layers.Conv2D(reduced, 1, activation=activation, kernel_initializer=kernel_initializer,
                      name=f"{name}_reduce")(s)
    s = layers.Conv2D(channels, 1, activation="sigmoid", kernel_initializer=kernel_initializer,
                      name=f"{name}_expand")(s)
    return layers.Multiply(name=f"{name}_excite")([x, s])
