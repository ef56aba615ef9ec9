"""Augmentation layers written with ``keras.ops`` only, so that they compile: XLA on TensorFlow,
``jax.jit`` on JAX, ``torch.compile`` on PyTorch.

Keras' own ``RandomRotation``, ``RandomZoom`` and ``RandomTranslation`` set
``supports_jit = False`` (TensorFlow's ``ImageProjectiveTransformV3`` has no XLA kernel), and one
of them in a model turns XLA off for the whole training step. ``RandomAffine`` does the three in
one resampling: every output pixel looks up where it comes from in the input (a rotation, a
scale and a shift about the image centre), reads the four pixels around that point with a
plain gather, and blends them bilinearly. Points that fall outside the image are reflected back
in (``fill_mode="reflect"``, as Keras' layers do), so no black corners appear.
"""
from __future__ import annotations

import math

import keras
from keras import ops

FILL_MODES = ("reflect", "nearest")


def _reflect(coordinate, size: int):
    """Fold a pixel coordinate back into ``[0, size - 1]`` by half-sample reflection
    (``d c b a | a b c d | d c b a``, Keras' and SciPy's "reflect")."""
    period = 2.0 * size
    c = coordinate + 0.5
    c = c - period * ops.floor(c / period)
    c = ops.where(c >= size, period - c, c) - 0.5
    return ops.clip(c, 0.0, size - 1.0)


def affine_warp(images, angle, scale, shift_y, shift_x, fill_mode: str = "reflect"):
    """Resample ``images`` (B, H, W, C) so that output pixel p shows the input at
    ``centre + scale * R(angle) (p - centre) - shift``: rotated by ``angle`` (radians),
    magnified by ``1 / scale`` (``scale`` < 1 zooms in) and moved by ``shift`` pixels.
    ``angle``, ``scale``, ``shift_y``, ``shift_x``: one value per image, shape (B,).
    Bilinear interpolation through gathers: no backend-specific image op."""
    if fill_mode not in FILL_MODES:
        raise ValueError(f"fill_mode must be one of {', '.join(FILL_MODES)}, got {fill_mode!r}")
    height, width, channels = (int(d) for d in images.shape[1:])
    dtype = images.dtype
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    v = ops.reshape(ops.arange(height, dtype="float32") - cy, (1, height, 1))
    u = ops.reshape(ops.arange(width, dtype="float32") - cx, (1, 1, width))

    def per_image(t):
        return ops.reshape(ops.cast(t, "float32"), (-1, 1, 1))

    cos, sin = per_image(ops.cos(angle)), per_image(ops.sin(angle))
    s = per_image(scale)
    src_x = s * (cos * u - sin * v) + cx - per_image(shift_x)     # (B, H, W)
    src_y = s * (sin * u + cos * v) + cy - per_image(shift_y)
    if fill_mode == "reflect":
        src_x, src_y = _reflect(src_x, width), _reflect(src_y, height)
    else:
        src_x, src_y = ops.clip(src_x, 0.0, width - 1.0), ops.clip(src_y, 0.0, height - 1.0)

    x0, y0 = ops.floor(src_x), ops.floor(src_y)
    wx, wy = ops.expand_dims(src_x - x0, -1), ops.expand_dims(src_y - y0, -1)
    x0, y0 = ops.cast(x0, "int32"), ops.cast(y0, "int32")
    x1, y1 = ops.minimum(x0 + 1, width - 1), ops.minimum(y0 + 1, height - 1)

    flat = ops.reshape(ops.cast(images, "float32"), (-1, channels))   # (B*H*W, C)
    base = ops.reshape(ops.arange(ops.shape(images)[0], dtype="int32") * (height * width), (-1, 1, 1))

    def read(y, x):
        index = ops.reshape(base + y * width + x, (-1,))
        return ops.reshape(ops.take(flat, index, axis=0), (-1, height, width, channels))

    top = read(y0, x0) * (1.0 - wx) + read(y0, x1) * wx
    bottom = read(y1, x0) * (1.0 - wx) + read(y1, x1) * wx
    return ops.cast(top * (1.0 - wy) + bottom * wy, dtype)


@keras.saving.register_keras_serializable(package="labkit")
class RandomAffine(keras.layers.Layer):
    """Random rotation, zoom and translation in one resampling, only while training.

    The ranges follow Keras' layers of the same names, so that one number means the same thing:
    ``rotation``: angle uniform in ±rotation × 2π (``RandomRotation(rotation)``);
    ``zoom``: zoom *in* by up to ``zoom`` (``RandomZoom(-zoom)``: the view covers 1 − zoom of
    the image at most); ``translation``: shift uniform in ±translation × the image side
    (``RandomTranslation(translation, translation)``). A random crop that is then resized to the
    input size, AlexNet's crops of 224 from 256 among them, is a zoom plus a translation.

    Draws from a ``keras.random.SeedGenerator``: the same ``seed`` gives the same sequence of
    transformations on every backend's run; ``seed=None`` differs from run to run.
    """

    def __init__(self, rotation: float = 0.0, zoom: float = 0.0, translation: float = 0.0,
                 fill_mode: str = "reflect", seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        for name, value, upper in (("rotation", rotation, 0.5), ("zoom", zoom, 0.9), ("translation", translation, 1.0)):
            if not 0.0 <= float(value) <= upper:
                raise ValueError(f"{name} must be between 0 and {upper}, got {value!r}")
        if fill_mode not in FILL_MODES:
            raise ValueError(f"fill_mode must be one of {', '.join(FILL_MODES)}, got {fill_mode!r}")
        self.rotation, self.zoom, self.translation = float(rotation), float(zoom), float(translation)
        self.fill_mode, self.seed = fill_mode, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training or (self.rotation == 0 and self.zoom == 0 and self.translation == 0):
            return images
        batch = (ops.shape(images)[0],)
        height, width = int(images.shape[1]), int(images.shape[2])

        def uniform(low, high):
            return keras.random.uniform(batch, low, high, seed=self.seed_generator)

        turn = self.rotation * 2.0 * math.pi
        angle = uniform(-turn, turn) if self.rotation else ops.zeros(batch)
        scale = uniform(1.0 - self.zoom, 1.0) if self.zoom else ops.ones(batch)
        t = self.translation
        shift_y = uniform(-t, t) * height if t else ops.zeros(batch)
        shift_x = uniform(-t, t) * width if t else ops.zeros(batch)
        return affine_warp(images, angle, scale, shift_y, shift_x, self.fill_mode)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rotation": self.rotation, "zoom": self.zoom,
                "translation": self.translation, "fill_mode": self.fill_mode, "seed": self.seed}
