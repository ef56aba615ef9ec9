"""The batches a run trains, validates and tests on, from ``labkit.data``'s pipeline.

Training and validation batches carry ``uint8`` images (4x less host-to-device traffic; the
model rescales them on the accelerator); test batches are floats in [0, 1] for the inference
model. Mixing (mixup, CutMix) happens here, in the input pipeline, on the CPU.
"""
from __future__ import annotations

import hashlib
import math

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


def training_arrays(train_data, image_size: int, num_classes: int):
    """``train_data`` checked: ``(images, labels)`` with ``uint8`` images ``(N, image_size,
    image_size, 3)`` (floats in [0, 1] are converted) and whole-number labels ``0 .. num_classes - 1``.
    Returns ``(images, labels, fingerprint)``; the fingerprint names the data in the run's folder,
    so that other data never resumes or returns this run."""
    try:
        images, labels = train_data
    except (TypeError, ValueError):
        raise ValueError("train_data must be a pair (images, labels), e.g. what labkit.augment.enlarge "
                         "returns.") from None
    images, labels = np.asarray(images), np.asarray(labels)
    expected = (image_size, image_size, 3)
    if images.ndim != 4 or images.shape[1:] != expected:
        raise ValueError(f"train_data's images have shape {images.shape}; this run needs (N, {image_size}, "
                         f"{image_size}, 3). Build them at the run's image size (crop_size={image_size} in "
                         "labkit.augment.enlarge), or pass image_size= to match them.")
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.floating) or images.min() < 0 or images.max() > 1:
            raise ValueError(f"train_data's images must be uint8 (0-255) or floats in [0, 1]; got {images.dtype} "
                             f"from {images.min()} to {images.max()}.")
        images = np.round(images * 255.0).astype(np.uint8)
    if labels.shape != (len(images),):
        raise ValueError(f"train_data holds {len(images)} images but labels of shape {labels.shape}; "
                         "give one whole-number label per image.")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"train_data's labels must be whole numbers from 0 to {num_classes - 1} (the run's "
                         f"classes); got {labels.dtype} from {labels.min()} to {labels.max()}.")
    images, labels = np.ascontiguousarray(images), labels.astype(np.int32)
    digest = hashlib.sha256(images.tobytes())
    digest.update(labels.tobytes())
    return images, labels, digest.hexdigest()[:10]


def datasets(cfg: TrainConfig, data_dir, outputs: int, train_arrays=None):
    """Training and validation batches (uint8 images) and test batches (float, for the inference
    model). With ``cfg.mixing`` the training and validation labels are one-hot, and training
    batches are mixed. With ``train_split="trainval"`` the validation images are training images,
    and there are no validation batches (``None``). With ``jit_compile`` training batches all
    have the same size (the last, smaller one is dropped): a compiled step is compiled once per
    input shape. ``train_arrays``: ``(images, labels)`` to train on instead of the split's images
    (``training_arrays``), shuffled the same way."""
    common = dict(image_size=cfg.image_size, partition=cfg.partition, data_dir=data_dir, classes=cfg.classes)
    val = (lkdata.oxflower17("val", batch_size=cfg.batch_size, dtype="uint8", **common)
           if cfg.train_split == "train" else None)
    test = lkdata.oxflower17("test", batch_size=cfg.batch_size, **common)  # float: for the inference model
    if val is not None and cfg.mixing != "none":
        val = _map(val, _transforms(val, cfg, mixing=False)[0])
    if val is not None and outputs > 1:
        val = _map(val, _targets(outputs))
    return training_batches(cfg, data_dir, outputs, train_arrays), val, test


def training_batches(cfg: TrainConfig, data_dir, outputs: int, train_arrays=None, shuffle: bool = True):
    """The training batches of ``datasets``. ``shuffle=False``: the same batches in a fixed order,
    from a pipeline that shares no random state with the run's (the time budget's probe)."""
    shuffled = dict(batch_size=cfg.batch_size, seed=cfg.seed, dtype="uint8",
                    drop_remainder=backend.jit_compile(cfg.jit_compile))
    if train_arrays is None:
        train = lkdata.oxflower17(cfg.train_split, shuffle=shuffle, images_per_class=cfg.images_per_class,
                                  image_size=cfg.image_size, partition=cfg.partition, data_dir=data_dir,
                                  classes=cfg.classes, **shuffled)
    else:
        train = lkdata.array_batches(*train_arrays, shuffle=shuffle, **shuffled)
    if cfg.mixing != "none":
        one_hot, mix = _transforms(train, cfg)
        train = _map(_map(train, one_hot), mix)
    if cfg.steps_per_epoch is not None:
        train = train.repeated() if isinstance(train, lkdata.ArrayBatches) else train.repeat()
    return _map(train, _targets(outputs)) if outputs > 1 else train


def _transforms(batches, cfg: TrainConfig, mixing: bool = True):
    """``(one_hot, mix)`` for ``batches``' pipeline, ``mix`` with a mixing layer of its own (none
    where ``mixing`` is off: validation only turns its labels one-hot)."""
    mixer = mixing_layer(cfg.mixing, seed=cfg.seed) if mixing else None
    make = _numpy_transforms if isinstance(batches, lkdata.ArrayBatches) else _tf_transforms
    return make(mixer, cfg.num_classes)


def _targets(outputs: int):
    """A map to one label per output (GoogLeNet's heads); plain Python, fine in both pipelines."""
    return lambda x, y: (x, tuple([y] * outputs))


def epoch_steps(images: int, batch_size: int, full_batches_only: bool) -> int:
    """Training steps in one pass over ``images``: the last, smaller batch counts unless a
    compiled step drops it (``full_batches_only``, see ``datasets``)."""
    return images // batch_size if full_batches_only else math.ceil(images / batch_size)


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
