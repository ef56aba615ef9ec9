"""VGG (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015), configurations A-E of the paper's Table 1.

Each entry is a 3x3 convolution with that many filters (stride 1, pad 1, ReLU), ``(n, 1)`` a 1x1
convolution (configuration C), ``"M"`` a 2x2 max-pool with stride 2, ``"LRN"`` local response
normalisation (A-LRN). Then fc6 4096, fc7 4096 (dropout 0.5 after each) and fc8.

Why 3x3 stacks: three 3x3 layers see a 7x7 window, like one 7x7 layer, with 3 ReLUs instead of 1
and 27C^2 instead of 49C^2 weights (C channels in and out); see ``labkit.inspect``.
Parameters at 224x224x3, 1000 classes: A 132,863,336; B 133,047,848; D 138,357,544; E 143,667,240.
"""
from __future__ import annotations

import keras
from keras import layers

from labkit.models._common import check_input_shape, check_num_classes, classifier_output
from labkit.models.layers import LocalResponseNormalization

CONFIGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, (256, 1), "M", 512, 512, (512, 1), "M",
          512, 512, (512, 1), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}
DEPTHS = {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}  # weight layers
MIN_INPUT_SIZE = 32  # five 2x2 poolings


def conv_block(x, filters: int, kernel: int, name: str, batch_norm: bool):
    """conv (3x3 or 1x1, stride 1, 'same') -> [batch norm] -> ReLU."""
    x = layers.Conv2D(filters, kernel, padding="same", name=name)(x)
    if batch_norm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def vgg(config: str = "D", num_classes: int = 1000, input_shape=(224, 224, 3), batch_norm: bool = False,
        dropout: float = 0.5, classifier_activation="softmax") -> keras.Model:
    """VGG configuration ``config`` (A, A-LRN, B, C, D, E); ``batch_norm`` adds BN after each conv."""
    if config not in CONFIGS:
        raise ValueError(f"VGG configuration must be one of {', '.join(CONFIGS)}, got {config!r}")
    check_num_classes(num_classes)
    check_input_shape(input_shape, MIN_INPUT_SIZE, f"VGG-{config}")
    inputs = keras.Input(shape=input_shape, name="input")
    x, block, conv = inputs, 1, 1
    for item in CONFIGS[config]:
        if item == "M":
            x = layers.MaxPooling2D(2, strides=2, name=f"pool{block}")(x)
            block, conv = block + 1, 1
        elif item == "LRN":
            x = LocalResponseNormalization(name=f"norm{block}")(x)
        else:
            filters, kernel = item if isinstance(item, tuple) else (item, 3)
            x = conv_block(x, filters, kernel, f"conv{block}_{conv}", batch_norm)
            conv += 1
    x = layers.Flatten(name="flatten")(x)
    for name in ("fc6", "fc7"):
        x = layers.Dense(4096, activation="relu", name=name)(x)
        x = layers.Dropout(dropout, name=f"drop{name[-1]}")(x)
    outputs = classifier_output(x, num_classes, "fc8", classifier_activation)
    variant = "" if config in ("A", "B", "D", "E") else "_" + config.lower().replace("-", "_")
    return keras.Model(inputs, outputs, name=f"vgg{DEPTHS[config]}{variant}{'_bn' if batch_norm else ''}")
