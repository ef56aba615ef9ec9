"""Helpers every builder shares: input checks and the classifier's output layer."""
from __future__ import annotations

import keras


def check_input_shape(input_shape, minimum: int, model: str, channels: int | None = None) -> tuple:
    """Validate ``(height, width, channels)``; an input too small raises ``ValueError``."""
    shape = tuple(input_shape)
    if len(shape) != 3 or any(s is None or int(s) < 1 for s in shape):
        raise ValueError(f"{model}: input_shape must be (height, width, channels), got {input_shape!r}")
    h, w, c = (int(s) for s in shape)
    if channels is not None and c != channels:
        raise ValueError(f"{model} expects {channels} input channel(s), got input_shape {shape}")
    if min(h, w) < minimum:
        raise ValueError(
            f"{model} needs inputs of at least {minimum}x{minimum} pixels (its downsampling would "
            f"shrink a {h}x{w} image to nothing); got input_shape {shape}. Use a larger image size.")
    return h, w, c


def check_num_classes(num_classes) -> int:
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    return num_classes


def classifier_output(x, num_classes: int, name: str, activation: str | None = "softmax",
                      output_name: str = "predictions", kernel_initializer="glorot_uniform"):
    """The last fully connected layer, then softmax in float32 (stable under mixed precision)."""
    x = keras.layers.Dense(num_classes, kernel_initializer=kernel_initializer, name=name)(x)
    if activation is None:
        return keras.layers.Activation("linear", dtype="float32", name=output_name)(x)
    return keras.layers.Activation(activation, dtype="float32", name=output_name)(x)
