"""AlexNet (Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional
Neural Networks", NeurIPS 2012), as the course's table lays it out (227x227x3 input):

    conv1  96 11x11 /4          55x55x96   -> max-pool 3x3 /2 (overlapping) -> LRN
    conv2 256  5x5  pad 2       27x27x256  -> max-pool 3x3 /2 -> LRN
    conv3 384  3x3  pad 1       13x13x384
    conv4 384  3x3  pad 1       13x13x384
    conv5 256  3x3  pad 1       13x13x256  -> max-pool 3x3 /2 -> 6x6x256
    dropout 0.5, fc6 4096, dropout 0.5, fc7 4096, fc8 classes (softmax); ReLU everywhere.

Padding, as Caffe's bvlc_alexnet: conv1 (stride 4) none; conv2..conv5 (stride 1) ``k // 2`` on
every side; the 3x3/2 max-pools none. Caffe's pools round their output size up and torchvision's
down; at 227 px the windows fit exactly (55 -> 27 -> 13 -> 6), so both give the same network.
62,378,344 parameters at 1000 classes. ``two_gpu=True`` restores the paper's split over two
GPUs: conv2, conv4 and conv5 see only the maps on their own GPU (grouped convolution, 2 groups),
which leaves 60,965,224 parameters. Today one GPU holds the whole net; ``tf.distribute`` splits
the *batch* across GPUs instead (see labkit.train).
"""
from __future__ import annotations

import keras
from keras import layers

from labkit.models._common import check_input_shape, check_num_classes, classifier_output
from labkit.models.layers import LocalResponseNormalization

MIN_INPUT_SIZE = 67  # the smallest input that leaves conv5's max-pool a 1x1 output

# (name, filters, kernel, stride, groups with two_gpu, then): "pool" = max-pool 3/2, "lrn" = LRN
FEATURES = [
    ("conv1", 96, 11, 4, 1, ["pool", "lrn"]),
    ("conv2", 256, 5, 1, 2, ["pool", "lrn"]),
    ("conv3", 384, 3, 1, 1, []),
    ("conv4", 384, 3, 1, 2, []),
    ("conv5", 256, 3, 1, 2, ["pool"]),
]
CLASSIFIER = [("fc6", 4096), ("fc7", 4096)]
DROPOUT = 0.5


def alexnet(num_classes: int = 1000, input_shape=(227, 227, 3), two_gpu: bool = False,
            lrn: bool = True, dropout: float = DROPOUT, classifier_activation="softmax") -> keras.Model:
    """AlexNet; ``lrn=False`` drops local response normalisation (for the ablation in lab 02)."""
    check_num_classes(num_classes)
    check_input_shape(input_shape, MIN_INPUT_SIZE, "AlexNet")
    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    for name, filters, kernel, stride, groups, after in FEATURES:
        padding = "valid" if stride > 1 else "same"  # conv1 is unpadded; the rest keep their size
        x = layers.Conv2D(filters, kernel, strides=stride, padding=padding, activation="relu",
                          groups=groups if two_gpu else 1, name=name)(x)
        index = name[-1]
        for step in after:
            if step == "pool":
                x = layers.MaxPooling2D(pool_size=3, strides=2, name=f"pool{index}")(x)
            elif lrn:
                x = LocalResponseNormalization(name=f"norm{index}")(x)
    x = layers.Flatten(name="flatten")(x)
    for name, units in CLASSIFIER:
        x = layers.Dropout(dropout, name=f"drop{name[-1]}")(x)
        x = layers.Dense(units, activation="relu", name=name)(x)
    outputs = classifier_output(x, num_classes, "fc8", classifier_activation)
    return keras.Model(inputs, outputs, name="alexnet_two_gpu" if two_gpu else "alexnet")
