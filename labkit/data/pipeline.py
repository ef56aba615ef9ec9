"""Batches of OxFlower17 for Keras: ``tf.data`` where TensorFlow is installed, NumPy elsewhere.

``oxflower17(split, image_size, batch_size)`` gathers batches from the decoded-image cache
(``labkit.data.decode``). With TensorFlow it returns a ``tf.data.Dataset``, which every Keras
backend can train from; on a machine without TensorFlow (a JAX- or PyTorch-only GPU box) it
returns ``ArrayBatches``, a ``keras.utils.PyDataset`` over the same cache. Both shuffle the
training split with ``seed`` (a new order every epoch, the same sequence of orders for the same
seed; the two pipelines' orders differ) and iterate as ``for images, labels in batches``.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np

from labkit.backend import has_tensorflow
from labkit.data.decode import decode_and_resize, decoded_images
from labkit.data.files import oxflower17_index, select_task

PIPELINES = ("tf.data", "numpy")
# a batch larger than this is gathered by several threads, each copying its share of the rows
# (NumPy copies without the GIL): a large fresh array is mapped page by page on first touch, and
# one thread gathered a 224-px batch of 256 (38.5 MB) at under half its rate at batch 64
GATHER_SPLIT_BYTES = 8 << 20
GATHER_THREADS = min(4, os.cpu_count() or 1)
_gather_pool: tuple[int, ThreadPoolExecutor] | None = None   # (the process that made it, the pool)


def gather_rows(images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``images[rows]``, in several threads when the result is large (``GATHER_SPLIT_BYTES``)."""
    global _gather_pool
    out = np.empty((len(rows),) + images.shape[1:], images.dtype)
    parts = min(GATHER_THREADS, len(rows), max(1, out.nbytes // GATHER_SPLIT_BYTES))
    if parts == 1:
        return np.take(images, rows, axis=0, out=out, mode="clip")  # rows come from a permutation
    if _gather_pool is None or _gather_pool[0] != os.getpid():  # a forked child has none of the threads
        _gather_pool = (os.getpid(), ThreadPoolExecutor(GATHER_THREADS, thread_name_prefix="labkit-gather"))
    bounds = np.linspace(0, len(rows), parts + 1).astype(int)
    jobs = [_gather_pool[1].submit(np.take, images, rows[a:b], 0, out[a:b], "clip")
            for a, b in zip(bounds[:-1], bounds[1:])]
    for job in jobs:
        job.result()
    return out


def default_pipeline() -> str:
    return "tf.data" if has_tensorflow() else "numpy"


class ArrayBatches(keras.utils.PyDataset):
    """Shuffled ``(images, labels)`` batches from in-memory arrays, for any Keras backend.

    ``shuffle``: a new permutation every epoch from ``numpy.random.default_rng((seed, epoch))``.
    ``repeat``: endless (for ``steps_per_epoch``): batch ``i`` is batch ``i % len`` of pass
    ``i // len``, and Keras' epochs (``on_epoch_end``) do not move it, since Keras keeps
    counting ``i`` across them. ``map(fn)``: a copy whose batches pass through
    ``fn(images, labels) -> (images, labels)`` (NumPy in, NumPy out), like ``tf.data``'s map.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, *, shuffle: bool = False,
                 seed: int = 0, drop_remainder: bool = False, to_float: bool = False, repeat: bool = False,
                 transforms=()):
        super().__init__()
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.batch_size = images, labels, int(batch_size)
        self.shuffle, self.seed, self.drop_remainder = shuffle, seed, drop_remainder
        self.to_float, self.repeat, self.transforms = to_float, repeat, tuple(transforms)
        self.epoch = 0
        self.per_epoch = (len(images) // self.batch_size if drop_remainder
                          else math.ceil(len(images) / self.batch_size))
        if self.per_epoch == 0:
            raise ValueError(f"{len(images)} images make no batch of {batch_size} with drop_remainder")

    def __len__(self):
        return self.per_epoch

    @property
    def num_batches(self):
        return None if self.repeat else self.per_epoch

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.images))
        return np.random.default_rng((self.seed, epoch)).permutation(len(self.images))

    def __getitem__(self, index):
        epoch, index = self.epoch + index // self.per_epoch, index % self.per_epoch
        if not self.repeat and epoch != self.epoch:
            raise IndexError(f"batch {index} of {self.per_epoch}")
        rows = self._order(epoch)[index * self.batch_size:(index + 1) * self.batch_size]
        x, y = gather_rows(self.images, rows), self.labels[rows]
        if self.to_float:
            x = x.astype(np.float32) / 255.0
        for fn in self.transforms:
            x, y = fn(x, y)
        return x, y

    def on_epoch_end(self):
        if not self.repeat:
            self.epoch += 1

    def _copy(self, **changes) -> "ArrayBatches":
        settings = dict(shuffle=self.shuffle, seed=self.seed, drop_remainder=self.drop_remainder,
                        to_float=self.to_float, repeat=self.repeat, transforms=self.transforms)
        copy = ArrayBatches(self.images, self.labels, self.batch_size, **{**settings, **changes})
        copy.epoch = self.epoch
        return copy

    def map(self, fn) -> "ArrayBatches":
        return self._copy(transforms=self.transforms + (fn,))

    def take(self, batches: int):
        """The first ``batches`` batches, as ``tf.data``'s ``take`` gives them."""
        return [self[i] for i in range(min(batches, self.per_epoch))]

    def repeated(self) -> "ArrayBatches":
        """The same batches without end (``tf.data``'s ``repeat()``), for ``steps_per_epoch``."""
        return self._copy(repeat=True)


class _OneBatch(keras.utils.PyDataset):
    """One batch, endlessly (``first_batch_repeated`` on the NumPy pipeline)."""

    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    def __len__(self):
        return 1

    @property
    def num_batches(self):
        return None

    def __getitem__(self, index):
        return self.batch


def first_batch_repeated(batches):
    """The first batch of ``batches`` (a ``tf.data.Dataset`` or ``ArrayBatches``) again and again,
    as the same kind of dataset with the same batch structure and shapes: a model fitted on it
    runs the training step that fitting on ``batches`` runs, compiled for the same input. The
    first batch is drawn once, as one ``next(iter(batches))`` would."""
    if isinstance(batches, ArrayBatches):
        return _OneBatch(batches[0])
    return batches.take(1).cache().repeat()


def oxflower17(
    split: str = "train",
    image_size: int | None = None,
    batch_size: int | None = None,
    *,
    partition: int = 1,
    data_dir=None,
    shuffle: bool | None = None,
    seed: int = 0,
    cache: bool = True,
    dtype: str = "float32",
    drop_remainder: bool = False,
    download: bool | None = None,
    profile=None,
    pipeline: str | None = None,
    classes=None,
    images_per_class: int | None = None,
):
    """``(image, label)`` batches for one split of OxFlower17.

    Images are decoded, their shorter side resized to ``image_size`` and centre-cropped; with
    ``cache`` (the default) that happens once, ever, and is kept on disk and in memory
    (``decoded_images``); ``cache=False`` decodes every epoch (``tf.data`` only). The training
    split is shuffled with ``seed`` (a new order every epoch, the same sequence of orders for the
    same seed). ``dtype="float32"`` gives pixel values in [0, 1]; ``dtype="uint8"`` gives 0..255.
    ``image_size`` and ``batch_size`` default to the active profile's. ``pipeline``: ``tf.data``
    (a ``tf.data.Dataset``; the default when TensorFlow is installed) or ``numpy``
    (``ArrayBatches``, a ``keras.utils.PyDataset``; the default without TensorFlow).
    ``classes`` (numbers or names) keeps only those classes, labelled 0..k-1 in that order, and
    ``images_per_class`` at most that many images of each (``labkit.data.select_task``): a
    smaller task, such as the source and target tasks of a transfer-learning experiment.
    """
    from labkit.profiles import get_profile

    if image_size is None or batch_size is None:
        prof = get_profile(profile)
        image_size = image_size or prof.image_size
        batch_size = batch_size or prof.batch_size
    if int(image_size) < 8:
        raise ValueError(f"image_size must be at least 8 pixels, got {image_size}.")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
    if dtype not in ("float32", "uint8"):
        raise ValueError(f"dtype must be 'float32' (values in [0, 1]) or 'uint8'; got {dtype!r}.")
    pipeline = pipeline or default_pipeline()
    if pipeline not in PIPELINES:
        raise ValueError(f"pipeline must be one of {', '.join(PIPELINES)}, got {pipeline!r}.")
    if pipeline == "tf.data" and not has_tensorflow():
        raise ValueError("pipeline 'tf.data' needs TensorFlow, which is not installed; use pipeline='numpy'.")
    if pipeline == "numpy" and not cache:
        raise ValueError("the numpy pipeline reads the decoded-image cache; cache=False needs pipeline='tf.data'.")
    rows = select_task(oxflower17_index(data_dir, partition, download=download), split, classes, images_per_class)
    if shuffle is None:
        shuffle = split in ("train", "trainval")
    labels = rows["label"].to_numpy(dtype=np.int32)
    size = int(image_size)
    if cache:  # decoded once, ever (see decoded_images); batches are gathered from memory
        images = decoded_images(size, data_dir, download=download)[rows["image_id"].to_numpy() - 1]
        return array_batches(images, labels, int(batch_size), shuffle=shuffle, seed=seed,
                             drop_remainder=drop_remainder, dtype=dtype, pipeline=pipeline)
    return _tf_stream(rows, labels, size, int(batch_size), shuffle, seed, dtype == "float32",
                      drop_remainder, data_dir, download)


def array_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, *, shuffle: bool = False,
                  seed: int = 0, drop_remainder: bool = False, dtype: str = "float32",
                  pipeline: str | None = None):
    """Batches of in-memory ``uint8`` images ``(N, H, W, 3)`` and their labels, in the same
    pipeline and with the same shuffling as ``oxflower17``'s: a ``tf.data.Dataset`` where
    TensorFlow is installed, else ``ArrayBatches``. ``dtype="float32"`` scales to [0, 1]."""
    pipeline = pipeline or default_pipeline()
    if pipeline == "numpy":
        return ArrayBatches(images, labels, batch_size, shuffle=shuffle, seed=seed,
                            drop_remainder=drop_remainder, to_float=dtype == "float32")
    import tensorflow as tf

    to_float = dtype == "float32"
    images, labels = tf.constant(images), tf.constant(labels)
    # shuffle and batch the row numbers, not the images: the same order as shuffling the images
    # themselves, without copying every image through a shuffle buffer
    ds = tf.data.Dataset.range(len(labels))
    if shuffle:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def gather(i):
        x = tf.gather(images, i)
        return (tf.cast(x, tf.float32) / 255.0 if to_float else x), tf.gather(labels, i)

    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _tf_stream(rows, labels, size, batch_size, shuffle, seed, to_float, drop_remainder, data_dir, download):
    """Decode every epoch (little memory): ``oxflower17(cache=False)``."""
    import tensorflow as tf

    def finish(x, y):
        return (tf.cast(x, tf.float32) / 255.0 if to_float else x), y

    ds = tf.data.Dataset.from_tensor_slices((rows["path"].to_numpy(dtype=str), labels))
    if shuffle:
        ds = ds.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda p, y: (decode_and_resize(tf.io.read_file(p), size), y),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
