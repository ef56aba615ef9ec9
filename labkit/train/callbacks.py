"""Keras callbacks a run uses besides Keras' own."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import keras

from labkit.train.records import write_json_atomically


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


# --- checkpoints ------------------------------------------------------------------------------
# On a fast GPU an epoch can take less time than writing the model: AlexNet's 60 epochs train in
# 0.1 s each on an H200, and writing its 230 MB (the backup, then the best weights) took 1.6 s an
# epoch (gpu check, 2026-12-04). So a run writes its backup, and the best weights with it, at the
# end of an epoch only when the training since the last write took at least 1 / BACKUP_COST_SHARE
# times what a write takes: checkpoints then cost at most about a tenth of the run. A write cheaper
# than BACKUP_ALWAYS_SECONDS (small networks, a CPU's long epochs) happens every epoch, and no
# more than BACKUP_MAX_GAP_SECONDS of training is ever left unsaved. The last epoch always writes.
BACKUP_COST_SHARE = 0.1
BACKUP_ALWAYS_SECONDS = 0.25
BACKUP_MAX_GAP_SECONDS = 120.0


class SaveSchedule:
    """When the next backup is due (see above); ``clock`` can be a stand-in in tests."""

    def __init__(self, clock=time.perf_counter):
        self.clock, self.last, self.cost, self.saved_now = clock, None, 0.0, False

    def start(self):
        self.last, self.saved_now = self.clock(), False

    def due(self) -> bool:
        if self.last is None or self.cost <= BACKUP_ALWAYS_SECONDS:
            return True
        return self.clock() - self.last >= min(BACKUP_MAX_GAP_SECONDS, self.cost / BACKUP_COST_SHARE)

    def saved(self, seconds: float):
        self.cost, self.last, self.saved_now = seconds, self.clock(), True


def writes_per_epoch(epoch_seconds: float, write_seconds: float) -> float:
    """How many backups a schedule writes per epoch of ``epoch_seconds`` (at most 1)."""
    if write_seconds <= BACKUP_ALWAYS_SECONDS:
        return 1.0
    gap = min(BACKUP_MAX_GAP_SECONDS, write_seconds / BACKUP_COST_SHARE)
    return min(1.0, epoch_seconds / gap)


class TimedBackup(keras.callbacks.BackupAndRestore):
    """Keras' ``BackupAndRestore`` (two copies, kept after training) that writes at the end of an
    epoch only when its ``SaveSchedule`` says so, and always after the last epoch."""

    def __init__(self, backup_dir, schedule: SaveSchedule):
        super().__init__(str(backup_dir), double_checkpoint=True, delete_checkpoint=False)
        self.schedule = schedule

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.schedule.start()

    def on_epoch_begin(self, epoch, logs=None):
        self.schedule.saved_now = False

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch, self._last_batch_seen = epoch + 1, 0
        if epoch + 1 >= self.params.get("epochs", epoch + 1) or self.schedule.due():
            started = self.schedule.clock()
            self._save_model()
            self.schedule.saved(self.schedule.clock() - started)


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the best ``monitor`` (in host memory) and writes them to
    ``path`` when the backup is written, and at the end of training: the file on disk is never
    older than the backup. ``path`` with ``.json`` for ``.weights.h5`` records the epoch and its
    value, so a resumed run replaces the file only with a better epoch. ``initial_value``: the
    value to beat when that record is missing (a backup from an older labkit)."""

    def __init__(self, path, monitor: str, schedule: SaveSchedule, initial_value: float | None = None):
        super().__init__()
        self.path, self.monitor, self.schedule = Path(path), monitor, schedule
        self.record_path = self.path.with_name(self.path.name.replace(".weights.h5", ".json"))
        self.initial_value = initial_value
        self.best, self.epoch, self.weights = None, None, None

    def on_train_begin(self, logs=None):
        kept = None
        if self.path.is_file() and self.record_path.is_file():
            try:
                kept = json.loads(self.record_path.read_text())["value"]
            except (OSError, ValueError, KeyError):
                kept = None
        self.best = kept if kept is not None else (self.initial_value if self.path.is_file() else None)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and (self.best is None or value > self.best):
            self.best, self.epoch, self.weights = float(value), epoch, self.model.get_weights()
        if self.schedule.saved_now:
            self.write()

    def on_train_end(self, logs=None):
        self.write()

    def write(self):
        """The kept weights to ``path``, through a temporary file (a crash never leaves half a file)."""
        if self.weights is None:
            return
        current = self.model.get_weights()
        self.model.set_weights(self.weights)
        tmp = self.path.with_name(f".{self.path.name.removesuffix('.weights.h5')}.tmp.weights.h5")
        try:
            self.model.save_weights(str(tmp))
        finally:
            self.model.set_weights(current)
        os.replace(tmp, self.path)
        write_json_atomically(self.record_path, {"monitor": self.monitor, "value": self.best, "epoch": self.epoch})
        self.weights = None
