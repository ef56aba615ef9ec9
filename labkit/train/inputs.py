"""The batches a run trains, validates and tests on, from ``labkit.data``'s pipeline.

Training and validation batches carry ``uint8`` images (4x less host-to-device traffic; the
model rescales them on the accelerator); test batches are floats in [0, 1] for the inference
model. Mixing (mixup, CutMix) happens here, in the input pipeline, on the CPU.
"""
from __future__ import annotations

import keras
import numpy as np

from labkit import backend
from labkit import data as lkdata
from labkit.train.config import MIXINGS, TrainConfig


def mixing_layer(mixing: str, seed: int | None = None):
    """The Keras layer that mixes a batch (``{"images", "labels"}`` with one-hot labels), or None."""
    if mixing not in MIXINGS:
        raise ValueError(f"mixing must be one of {', '.join(MIXINGS)}, got {mixing!r}.")
    if mixing == "mixup":
        # float32 also under a mixed-precision policy: the pipeline runs outside the model
        return keras.layers.MixUp(alpha=0.2, seed=seed, dtype="float32")   # the paper's ImageNet alpha
    if mixing == "cutmix":
        return keras.layers.CutMix(factor=1.0, seed=seed, dtype="float32")  # the paper's Beta(1, 1) areas
    return None


def _numpy_transforms(mixer, classes: int):
    """The same steps as the tf.data maps below, on NumPy batches (``ArrayBatches.map``)."""
    def one_hot(x, y):
        return x, np.eye(classes, dtype=np.float32)[y]

    def mix(x, y):
        out = mixer({"images": x.astype(np.float32), "labels": y}, training=True)
        images = np.clip(np.round(keras.ops.convert_to_numpy(out["images"])), 0, 255).astype(np.uint8)
        return images, keras.ops.convert_to_numpy(out["labels"])

    return one_hot, mix


def _tf_transforms(mixer, classes: int):
    import tensorflow as tf

    def one_hot(x, y):
        return x, tf.one_hot(y, classes)

    def mix(x, y):
        out = mixer({"images": tf.cast(x, tf.float32), "labels": y}, training=True)
        return tf.cast(tf.clip_by_value(tf.round(out["images"]), 0, 255), tf.uint8), out["labels"]

    return one_hot, mix


def _map(batches, fn):
    if isinstance(batches, lkdata.ArrayBatches):
        return batches.map(fn)
    import tensorflow as tf

    return batches.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def datasets(cfg: TrainConfig, data_dir, outputs: int):
    """Training and validation batches (uint8 images) and test batches (float, for the inference
    model). With ``cfg.mixing`` the training and validation labels are one-hot, and training
    batches are mixed. With ``train_split="trainval"`` the validation images are training images,
    and there are no validation batches (``None``). With ``jit_compile`` training batches all
    have the same size (the last, smaller one is dropped): a compiled step is compiled once per
    input shape."""
    mixer = mixing_layer(cfg.mixing, seed=cfg.seed)
    common = dict(image_size=cfg.image_size, partition=cfg.partition, data_dir=data_dir, classes=cfg.classes)
    train = lkdata.oxflower17(cfg.train_split, batch_size=cfg.batch_size, seed=cfg.seed, dtype="uint8",
                              drop_remainder=backend.jit_compile(cfg.jit_compile),
                              images_per_class=cfg.images_per_class, **common)
    val = (lkdata.oxflower17("val", batch_size=cfg.batch_size, dtype="uint8", **common)
           if cfg.train_split == "train" else None)
    test = lkdata.oxflower17("test", batch_size=cfg.batch_size, **common)  # float: for the inference model
    numpy = isinstance(train, lkdata.ArrayBatches)
    one_hot, mix = (_numpy_transforms if numpy else _tf_transforms)(mixer, cfg.num_classes)

    def to_targets(x, y):  # one label per output (GoogLeNet's heads); plain Python, fine in both pipelines
        return (x, tuple([y] * outputs)) if outputs > 1 else (x, y)

    if mixer is not None:
        train = _map(_map(train, one_hot), mix)
        val = _map(val, one_hot) if val is not None else None
    if cfg.steps_per_epoch is not None:
        train = train.repeated() if numpy else train.repeat()
    if outputs > 1:
        train, val = _map(train, to_targets), (_map(val, to_targets) if val is not None else None)
    return train, val, test


def channel_statistics(dataset, batches: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and variance over the first ``batches`` training batches (for input
    normalisation, like AlexNet's mean subtraction)."""
    images = np.concatenate([np.asarray(x) for x, _ in dataset.take(batches)])
    return images.mean(axis=(0, 1, 2)), images.var(axis=(0, 1, 2))


def training_images(cfg: TrainConfig, index) -> int:
    """How many images one pass over the training split holds (680, or 1,020 with trainval; fewer
    with ``classes`` or ``images_per_class``)."""
    return len(lkdata.select_task(index, cfg.train_split, cfg.classes, cfg.images_per_class))


def split_sizes(cfg: TrainConfig, index) -> dict:
    """Images in the run's validation and test splits (its classes only)."""
    return {split: len(lkdata.select_task(index, split, cfg.classes)) for split in ("val", "test")}
