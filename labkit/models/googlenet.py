"""GoogLeNet / Inception v1 (Szegedy et al., "Going Deeper with Convolutions", CVPR 2015).

The paper's Table 1. Each inception module runs four branches side by side and concatenates
them: 1x1; 1x1 "reduce" then 3x3; 1x1 "reduce" then 5x5; 3x3 max-pool then 1x1 "pool proj".
The 1x1 reductions are the bottlenecks that keep the 3x3 and 5x5 convolutions affordable.

    stem: conv 7x7/2 64 -> max-pool 3x3/2 -> LRN -> conv 1x1 64 -> conv 3x3 192 -> LRN -> max-pool
    3a 3b -> max-pool -> 4a 4b 4c 4d 4e -> max-pool -> 5a 5b -> global average pool
    -> dropout 0.4 -> fc (softmax)

Outputs at 224x224: 28x28x256 after 3a, 28x28x480 after 3b, 14x14x512 after 4a-4c, 14x14x528
after 4d, 14x14x832 after 4e, 7x7x832 after 5a, 7x7x1024 after 5b. All convolutions use ReLU.
Without auxiliary heads the network has 6,998,552 parameters at 1000 classes (the paper's
Table 1 sums to about 6.8 million: it leaves out biases and rounds).

Padding is Caffe's (bvlc_googlenet): conv1 7x7/2 pads 3 on every side, explicitly, and the
3x3/2 max-pools round their output up (``max_pool``), so feature maps line up pixel for pixel
with the original and with torchvision's GoogLeNet.

Auxiliary classifiers (``aux_classifiers=True``), on 4a and 4d, exist for training only:
avg-pool 5x5/3 -> conv 1x1 128 -> fc 1024 -> dropout 0.7 -> fc (softmax); their losses are added
with weight 0.3. The model then has three outputs ``predictions``, ``aux1``, ``aux2``;
``labkit.models.inference_model`` keeps only ``predictions`` (the weights are shared).
"""
from __future__ import annotations

import keras
from keras import layers

from labkit.models._common import check_input_shape, check_num_classes, classifier_output
from labkit.models.layers import LocalResponseNormalization

# module: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj), as in Table 1
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
LAYOUT = ["3a", "3b", "pool3", "4a", "4b", "4c", "4d", "4e", "pool4", "5a", "5b"]
AUX_AFTER = {"4a": "aux1", "4d": "aux2"}
MIN_INPUT_SIZE = 32  # five stride-2 stages
AUX_LOSS_WEIGHT = 0.3


def conv(x, filters: int, kernel: int, name: str, strides: int = 1, batch_norm: bool = False):
    """conv -> [batch norm] -> ReLU. Padding ``kernel // 2`` on every side, as Caffe's prototxt:
    'same' at stride 1; at stride 2 (conv1) explicit, because TensorFlow's 'same' would pad
    (2, 3) where Caffe pads (3, 3)."""
    padding = "same"
    if strides > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        padding = "valid"
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=not batch_norm, name=name)(x)
    if batch_norm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def max_pool(x, name: str, pool: int = 3, strides: int = 2):
    """Caffe's 3x3/2 max-pool, which rounds its output size up (torchvision: ``ceil_mode=True``):
    where the windows would leave out the last row or column, it gets one more row or column
    after it. That is 0 before and 1 after on an even side (112 -> 56), nothing on an odd one.
    Zeros act as -inf would: every input here is a ReLU's (or LRN of one), never negative."""
    pad = [(-(int(n) - pool)) % strides for n in x.shape[1:3]]
    if any(pad):
        x = layers.ZeroPadding2D(((0, pad[0]), (0, pad[1])), name=f"{name}_pad")(x)
    return layers.MaxPooling2D(pool, strides=strides, name=name)(x)


def inception_module(x, filters, name: str, batch_norm: bool = False):
    """The four parallel branches of Figure 2(b), concatenated along the channels."""
    n1x1, n3x3red, n3x3, n5x5red, n5x5, pool_proj = filters
    b1 = conv(x, n1x1, 1, f"{name}_1x1", batch_norm=batch_norm)
    b2 = conv(x, n3x3red, 1, f"{name}_3x3_reduce", batch_norm=batch_norm)
    b2 = conv(b2, n3x3, 3, f"{name}_3x3", batch_norm=batch_norm)
    b3 = conv(x, n5x5red, 1, f"{name}_5x5_reduce", batch_norm=batch_norm)
    b3 = conv(b3, n5x5, 5, f"{name}_5x5", batch_norm=batch_norm)
    b4 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    b4 = conv(b4, pool_proj, 1, f"{name}_pool_proj", batch_norm=batch_norm)
    return layers.Concatenate(name=name)([b1, b2, b3, b4])


def auxiliary_classifier(x, num_classes: int, name: str, classifier_activation="softmax"):
    """Section 5: avg-pool 5x5/3, conv 1x1 128, fc 1024, dropout 0.7, fc + softmax."""
    size = min(5, x.shape[1], x.shape[2])  # 5x5 at 224 px input; smaller inputs get a smaller window
    x = layers.AveragePooling2D(size, strides=3, name=f"{name}_pool")(x)
    x = conv(x, 128, 1, f"{name}_conv")
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(1024, activation="relu", name=f"{name}_fc")(x)
    x = layers.Dropout(0.7, name=f"{name}_drop")(x)
    return classifier_output(x, num_classes, f"{name}_classifier", classifier_activation, output_name=name)


def googlenet(num_classes: int = 1000, input_shape=(224, 224, 3), aux_classifiers: bool = False,
              batch_norm: bool = False, lrn: bool = True, dropout: float = 0.4,
              classifier_activation="softmax") -> keras.Model:
    """Inception v1. ``batch_norm=True`` adds BN after every convolution (as in Inception v2 and
    torchvision) and drops the LRN layers, which BN supersedes."""
    check_num_classes(num_classes)
    check_input_shape(input_shape, MIN_INPUT_SIZE, "GoogLeNet")
    use_lrn = lrn and not batch_norm
    inputs = keras.Input(shape=input_shape, name="input")
    x = conv(inputs, 64, 7, "conv1", strides=2, batch_norm=batch_norm)
    x = max_pool(x, "pool1")
    if use_lrn:
        x = LocalResponseNormalization(name="norm1")(x)
    x = conv(x, 64, 1, "conv2_reduce", batch_norm=batch_norm)
    x = conv(x, 192, 3, "conv2", batch_norm=batch_norm)
    if use_lrn:
        x = LocalResponseNormalization(name="norm2")(x)
    x = max_pool(x, "pool2")

    aux_outputs = []
    for step in LAYOUT:
        if step.startswith("pool"):
            x = max_pool(x, step)
            continue
        x = inception_module(x, INCEPTION[step], f"inception_{step}", batch_norm)
        if aux_classifiers and step in AUX_AFTER:
            aux_outputs.append(auxiliary_classifier(x, num_classes, AUX_AFTER[step], classifier_activation))

    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = classifier_output(x, num_classes, "classifier", classifier_activation)
    if aux_classifiers:
        return keras.Model(inputs, [outputs, *aux_outputs], name="googlenet_aux")
    return keras.Model(inputs, outputs, name="googlenet")
