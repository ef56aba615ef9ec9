"""Keras callbacks a run uses besides Keras' own."""
from __future__ import annotations

import time

import keras


class EpochTimer(keras.callbacks.Callback):
    """Adds ``train_seconds`` and ``images_per_second`` (training part of the epoch only) and
    ``learning_rate`` to the logs, so that ``history.csv`` records them. Counts steps by the
    batch index Keras reports, so it is right with ``steps_per_execution`` > 1 too."""

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size

    def on_epoch_begin(self, epoch, logs=None):
        self.start, self.steps, self.train_seconds = time.perf_counter(), 0, None

    def on_train_batch_end(self, batch, logs=None):
        self.steps = batch + 1

    def on_test_begin(self, logs=None):
        if self.train_seconds is None:  # validation starts: the training part is over
            self.train_seconds = time.perf_counter() - self.start

    def on_epoch_end(self, epoch, logs=None):
        seconds = self.train_seconds or (time.perf_counter() - self.start)
        if logs is not None:
            logs["train_seconds"] = seconds
            logs["images_per_second"] = self.steps * self.batch_size / max(seconds, 1e-9)
            lr = self.model.optimizer.learning_rate
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(lr(self.model.optimizer.iterations) if callable(lr) else lr))
