"""Data augmentation: showing the network more variety than the 680 training images hold.

AlexNet (section 4.1) enlarged its training set with random 224x224 crops of the 256x256 images
and their horizontal reflections, and by altering RGB intensities (PCA colour augmentation).
Here: a Keras preprocessing-layer pipeline that runs *inside the model*, so on the GPU, and only
while training (Keras augmentation layers pass images through unchanged at inference).
"""
from __future__ import annotations

import keras

# strength per profile: how far each random transformation may go
STRENGTHS = {
    "none": None,
    "light": dict(rotation=0.03, zoom=0.10, translation=0.05, contrast=0.10, brightness=0.10),
    "standard": dict(rotation=0.08, zoom=0.20, translation=0.10, contrast=0.20, brightness=0.15),
    "strong": dict(rotation=0.15, zoom=0.30, translation=0.15, contrast=0.30, brightness=0.25),
}


def keras_augmentation(strength: str = "standard", seed: int | None = None, name: str = "augmentation"):
    """A ``keras.Sequential`` of random flip, rotation, zoom, translation, contrast and brightness.

    Expects images with values in [0, 1]. ``strength`` is one of ``none``, ``light``,
    ``standard``, ``strong``; ``none`` returns ``None``.
    """
    if strength not in STRENGTHS:
        raise ValueError(f"augmentation strength must be one of {', '.join(STRENGTHS)}, got {strength!r}")
    s = STRENGTHS[strength]
    if s is None:
        return None
    L = keras.layers
    return keras.Sequential([
        L.RandomFlip("horizontal", seed=seed, name="flip"),
        L.RandomRotation(s["rotation"], fill_mode="reflect", seed=seed, name="rotation"),
        L.RandomZoom(-s["zoom"], fill_mode="reflect", seed=seed, name="zoom"),  # zoom in only
        L.RandomTranslation(s["translation"], s["translation"], fill_mode="reflect", seed=seed, name="translation"),
        L.RandomContrast(s["contrast"], value_range=(0, 1), seed=seed, name="contrast"),
        L.RandomBrightness(s["brightness"], value_range=(0, 1), seed=seed, name="brightness"),
    ], name=name)


def ten_crops(images, crop_size: int):
    """AlexNet's test-time views (section 4.1): the four corner and the central
    ``crop_size`` patches, and their horizontal reflections.

    ``images``: a batch ``(B, H, W, C)`` with H, W >= crop_size. Returns ``(10, B, crop, crop, C)``
    in the order top-left, top-right, bottom-left, bottom-right, centre, then the same mirrored.
    """
    import tensorflow as tf

    images = tf.convert_to_tensor(images)
    h, w = int(images.shape[1]), int(images.shape[2])
    c = crop_size
    if c > min(h, w):
        raise ValueError(f"crop_size {c} is larger than the images ({h}x{w})")
    offsets = [(0, 0), (0, w - c), (h - c, 0), (h - c, w - c), ((h - c) // 2, (w - c) // 2)]
    crops = [images[:, y:y + c, x:x + c, :] for y, x in offsets]
    crops += [tf.image.flip_left_right(v) for v in crops]
    return tf.stack(crops)
