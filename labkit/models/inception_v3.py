"""Inception v3's factorised modules (Szegedy, Vanhoucke, Ioffe, Shlens & Wojna, "Rethinking the
Inception Architecture for Computer Vision", CVPR 2016), as building blocks.

Two factorisations make GoogLeNet's module cheaper at the same receptive field:

* **into smaller convolutions** (the paper's Figure 5): a 5x5 convolution sees what two stacked
  3x3 convolutions see, with 2·9 = 18 weights per input-output channel pair instead of 25 (28%
  fewer), and one more non-linearity;
* **into asymmetric convolutions** (Figure 6): an n x n convolution becomes a 1 x n then an n x 1,
  2n weights instead of n² (33% fewer for n = 3, 71% for n = 7).

Figure 7's module, for the coarsest (8x8) grid, splits a 3x3 into a 1x3 and a 3x1 side by side
(an "expanded filter bank") to give more, not fewer, features. Every convolution is conv-BN-ReLU
(v2's batch norm). Channel widths are those of the paper's Table 1 / the released model
(``keras.applications.InceptionV3``'s ``mixed0`` .. ``mixed10``); the released model keeps a 5x5
in the 35x35 modules, where the paper's figure shows the factorised pair.
"""
from __future__ import annotations

from keras import layers


def conv_bn(x, filters: int, kernel, name: str, strides: int = 1, padding: str = "same"):
    """Convolution (no bias), batch norm, ReLU. ``kernel``: an int or ``(rows, columns)``."""
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(scale=False, epsilon=1e-3, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def saving(n: int, kind: str = "asymmetric") -> float:
    """The share of weights a factorisation saves: ``"asymmetric"`` (n x n -> 1 x n + n x 1) or
    ``"smaller"`` (n x n -> (n - 1) / 2 stacked 3x3, e.g. 5x5 -> two 3x3)."""
    if kind == "asymmetric":
        return 1 - 2 * n / n ** 2
    if kind == "smaller":
        if n % 2 != 1 or n < 3:
            raise ValueError(f"a stack of 3x3 convolutions covers odd sizes 3, 5, 7 ...; got {n}")
        return 1 - 9 * (n - 1) // 2 / n ** 2
    raise ValueError(f"kind must be 'asymmetric' or 'smaller', got {kind!r}")


def module_a(x, pool_filters: int, name: str):
    """Figure 5, on the 35x35 grid: 1x1 | 1x1 -> 3x3 -> 3x3 (the factorised 5x5) | 1x1 -> 5x5 as
    released | 3x3 average pool -> 1x1, concatenated."""
    b1 = conv_bn(x, 64, 1, f"{name}_1x1")
    b2 = conv_bn(conv_bn(x, 48, 1, f"{name}_5x5_reduce"), 64, 5, f"{name}_5x5")
    b3 = conv_bn(x, 64, 1, f"{name}_3x3dbl_reduce")
    b3 = conv_bn(conv_bn(b3, 96, 3, f"{name}_3x3dbl_1"), 96, 3, f"{name}_3x3dbl_2")
    b4 = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    b4 = conv_bn(b4, pool_filters, 1, f"{name}_pool_proj")
    return layers.Concatenate(name=name)([b1, b2, b3, b4])


def module_b(x, width: int, name: str, n: int = 7):
    """Figure 6, on the 17x17 grid: 1x1 | 1x1 -> 1xn -> nx1 | 1x1 -> nx1 -> 1xn -> nx1 -> 1xn |
    3x3 average pool -> 1x1; every branch ends with 192 channels. ``width``: the inner branches'
    channels (128, 160, 160, 192 in the four modules)."""
    b1 = conv_bn(x, 192, 1, f"{name}_1x1")
    b2 = conv_bn(x, width, 1, f"{name}_{n}x{n}_reduce")
    b2 = conv_bn(conv_bn(b2, width, (1, n), f"{name}_1x{n}"), 192, (n, 1), f"{name}_{n}x1")
    b3 = conv_bn(x, width, 1, f"{name}_{n}x{n}dbl_reduce")
    for i, (kernel, filters) in enumerate((((n, 1), width), ((1, n), width), ((n, 1), width), ((1, n), 192)), 1):
        b3 = conv_bn(b3, filters, kernel, f"{name}_{n}x{n}dbl_{i}")
    b4 = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    b4 = conv_bn(b4, 192, 1, f"{name}_pool_proj")
    return layers.Concatenate(name=name)([b1, b2, b3, b4])


def module_c(x, name: str):
    """Figure 7, on the 8x8 grid: 1x1 (320) | 1x1 (384) -> [1x3, 3x1] | 1x1 (448) -> 3x3 (384) ->
    [1x3, 3x1] | 3x3 average pool -> 1x1 (192): 2,048 channels."""
    b1 = conv_bn(x, 320, 1, f"{name}_1x1")
    b2 = conv_bn(x, 384, 1, f"{name}_3x3_reduce")
    b2 = layers.Concatenate(name=f"{name}_3x3")([conv_bn(b2, 384, (1, 3), f"{name}_1x3"),
                                                  conv_bn(b2, 384, (3, 1), f"{name}_3x1")])
    b3 = conv_bn(conv_bn(x, 448, 1, f"{name}_3x3dbl_reduce"), 384, 3, f"{name}_3x3dbl")
    b3 = layers.Concatenate(name=f"{name}_3x3dbl_split")([conv_bn(b3, 384, (1, 3), f"{name}_dbl_1x3"),
                                                          conv_bn(b3, 384, (3, 1), f"{name}_dbl_3x1")])
    b4 = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    b4 = conv_bn(b4, 192, 1, f"{name}_pool_proj")
    return layers.Concatenate(name=name)([b1, b2, b3, b4])
