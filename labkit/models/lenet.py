"""LeNet-5 (LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 1998), in the two forms the slides show.

=====  =====================  ==========  ======================  ==================
layer  what                   output      params (1998)           params (modern)
=====  =====================  ==========  ======================  ==================
C1     conv 5x5, 6 maps       28x28x6     156                     156
S2     subsample 2x2          14x14x6     12 (coef. + bias)       0 (average pool)
C3     conv 5x5, 16 maps      10x10x16    1,516 (partial table)   2,416 (full)
S4     subsample 2x2          5x5x16      32                      0
C5     conv 5x5, 120 maps     1x1x120     48,120                  48,120
F6     fully connected 84     84          10,164                  10,164
out    fully connected        classes     850 (10 classes)        850
=====  =====================  ==========  ======================  ==================

The 1998 output layer is a set of Euclidean RBF units; both forms here use a softmax layer,
as today's implementations and the slides' modern form do.
"""
from __future__ import annotations

import keras
from keras import layers

from labkit.models._common import check_input_shape, check_num_classes, classifier_output
from labkit.models.layers import PartialConv2D, Subsampling, scaled_tanh

MIN_INPUT_SIZE = 32

# (name, kind, maps): the paper's layer sequence
LAYERS = [
    ("C1", "conv", 6),
    ("S2", "pool", None),
    ("C3", "conv", 16),
    ("S4", "pool", None),
    ("C5", "conv", 120),
    ("F6", "dense", 84),
]


def lenet5(num_classes: int = 10, input_shape=(32, 32, 1), form: str = "original",
           classifier_activation="softmax") -> keras.Model:
    """LeNet-5. ``form="original"`` (1998: C3 connection table, trainable subsampling, scaled
    tanh) or ``form="modern"`` (full C3, plain average pooling, ReLU)."""
    if form not in ("original", "modern"):
        raise ValueError(f"LeNet-5 form must be 'original' or 'modern', got {form!r}")
    check_num_classes(num_classes)
    check_input_shape(input_shape, MIN_INPUT_SIZE, "LeNet-5")
    original = form == "original"
    act = scaled_tanh if original else "relu"

    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    for name, kind, maps in LAYERS:
        if kind == "conv" and name == "C3" and original:
            x = PartialConv2D(5, activation=act, name=name)(x)
        elif kind == "conv":
            x = layers.Conv2D(maps, 5, activation=act, name=name)(x)
        elif kind == "pool":
            x = Subsampling(2, activation=act, name=name)(x) if original else layers.AveragePooling2D(2, name=name)(x)
        else:
            x = layers.Flatten(name="flatten")(x)
            x = layers.Dense(maps, activation=act, name=name)(x)
    outputs = classifier_output(x, num_classes, "output", classifier_activation)
    return keras.Model(inputs, outputs, name=f"lenet5_{form}")
