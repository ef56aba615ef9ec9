"""Evaluating a trained classifier: top-1 / top-5 accuracy, per-class accuracy, confusion matrix.

Top-5 is the ImageNet metric the AlexNet, VGG, GoogLeNet and ResNet papers report: a prediction
counts as right when the true class is among the five most probable.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd


@dataclasses.dataclass
class Evaluation:
    """Predictions on one split and the metrics computed from them."""

    labels: np.ndarray         # (n,) true classes
    probabilities: np.ndarray  # (n, classes)
    class_names: tuple

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    def top_k(self, k: int) -> float:
        k = min(k, self.probabilities.shape[1])
        best = np.argsort(-self.probabilities, axis=1)[:, :k]
        return float(np.mean(np.any(best == self.labels[:, None], axis=1)))

    @property
    def top1(self) -> float:
        return self.top_k(1)

    @property
    def top5(self) -> float:
        return self.top_k(5)

    def confusion_matrix(self) -> np.ndarray:
        """``cm[i, j]``: images of class i predicted as class j."""
        n = len(self.class_names)
        cm = np.zeros((n, n), dtype=np.int64)
        np.add.at(cm, (self.labels, self.predictions), 1)
        return cm

    def per_class(self) -> pd.DataFrame:
        cm = self.confusion_matrix()
        support = cm.sum(axis=1)
        return pd.DataFrame({
            "class_name": list(self.class_names),
            "images": support,
            "correct": np.diag(cm),
            "accuracy": np.divide(np.diag(cm), support, out=np.zeros(len(support)), where=support > 0),
        })

    def summary(self) -> dict:
        return {"images": int(len(self.labels)), "top1": self.top1, "top5": self.top5}


def split_arrays(split: str, image_size: int, data_dir=None, partition: int = 1):
    """All images (float32 in [0, 1]) and labels of a split, in the order ``evaluate`` sees them."""
    from labkit import data

    ds = data.oxflower17(split, image_size, 64, data_dir=data_dir, partition=partition, shuffle=False)
    images, labels = zip(*[(np.asarray(x), np.asarray(y)) for x, y in ds])
    return np.concatenate(images), np.concatenate(labels)


def _main_output(p):
    """The class probabilities of a model with auxiliary outputs (GoogLeNet's): the first, or "predictions"."""
    if isinstance(p, (list, tuple)):
        return p[0]
    if isinstance(p, dict):
        return p["predictions"]
    return p


def predict_batches(model, images, batch_size: int) -> np.ndarray:
    """The main output of ``model`` for ``images``, ``batch_size`` at a time, as float32 NumPy.
    Every call has the same shape: the last, smaller batch is padded (and the padding's outputs
    dropped), so that the prediction program is traced or compiled once (XLA, ``jax.jit``) and not
    once more for each new batch size."""
    from keras import ops

    out = []
    for start in range(0, len(images), batch_size):
        chunk = np.asarray(images[start:start + batch_size])
        n = len(chunk)
        if n < batch_size:
            chunk = np.concatenate([chunk, np.zeros((batch_size - n, *chunk.shape[1:]), dtype=chunk.dtype)])
        p = _main_output(model.predict_on_batch(chunk))  # compiled (jit on JAX), unlike model(x)
        out.append(np.asarray(ops.convert_to_numpy(ops.cast(p, "float32")))[:n])
    return np.concatenate(out)


def predict(model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities over a whole ``(images, labels)`` dataset (main output only), in
    batches of the dataset's first batch size (``predict_batches``)."""
    labels, probs, size = [], [], None
    for images, y in dataset:
        images, y = np.asarray(images), np.asarray(y)
        size = size or len(images)
        probs.append(predict_batches(model, images, size))
        labels.append(y.argmax(axis=-1) if y.ndim == 2 else y)
    return np.concatenate(labels).astype(np.int64), np.concatenate(probs)


def evaluate(model, dataset, class_names) -> Evaluation:
    """Run ``model`` over ``dataset`` and return an ``Evaluation`` (top-1, top-5, per class, ...)."""
    labels, probs = predict(model, dataset)
    if probs.shape[1] != len(class_names):
        raise ValueError(f"the model predicts {probs.shape[1]} classes but {len(class_names)} class names were given")
    return Evaluation(labels=labels, probabilities=probs, class_names=tuple(class_names))


def ten_crop_probabilities(model, images, crop_size: int, batch_size: int | None = None) -> np.ndarray:
    """The mean softmax output of ``model`` over the ten views (``labkit.augment.ten_crops``) of
    each image in a batch ``(B, H, W, C)``: ``(B, classes)``. The views go through the model
    ``batch_size`` at a time (default: all 10 B at once), in one shape (``predict_batches``)."""
    from keras import ops

    from labkit.augment import ten_crops

    views = ops.convert_to_numpy(ten_crops(np.asarray(images), crop_size))  # (10, B, size, size, 3)
    p = predict_batches(model, views.reshape(-1, crop_size, crop_size, views.shape[-1]), batch_size or 10 * len(images))
    return p.reshape(10, len(images), -1).mean(axis=0)


def evaluate_ten_crop(model, class_names, split: str = "test", image_size: int | None = None,
                      batch_size: int = 32, data_dir=None, partition: int = 1,
                      resize_ratio: float = 256 / 224, classes=None, images=None) -> Evaluation:
    """AlexNet's 10-crop testing: images are resized to ``image_size * 256/224`` (256 for 224),
    and the softmax outputs of the ten views (``labkit.augment.ten_crops``) are averaged.
    ``classes``: the run's classes (``labkit.data.oxflower17``), for a model trained on some.
    ``images``: positions in the split (in ``evaluate``'s order) to test only those."""
    from labkit import data

    size = image_size or int(model.inputs[0].shape[1])
    big = int(round(size * resize_ratio))
    ds = data.oxflower17(split, big, batch_size, data_dir=data_dir, partition=partition, shuffle=False,
                         classes=classes)
    wanted = None if images is None else np.asarray(images)
    labels, probs, picked, seen = [], [], [], 0
    for batch, y in ds:
        batch, y = np.asarray(batch), np.asarray(y)
        if wanted is None:
            probs.append(ten_crop_probabilities(model, batch, size, 10 * batch_size))
            labels.append(y)
            continue
        keep = np.flatnonzero(np.isin(np.arange(seen, seen + len(y)), wanted))
        seen += len(y)
        picked.append(batch[keep])
        labels.append(y[keep])
    if wanted is not None:  # a sample: its images together, not each padded to a whole batch of views
        chosen = np.concatenate(picked)
        probs = [ten_crop_probabilities(model, chosen[i:i + batch_size], size, 10 * batch_size)
                 for i in range(0, len(chosen), batch_size)]
    return Evaluation(np.concatenate(labels).astype(np.int64), np.concatenate(probs), tuple(class_names))
