"""When a run writes its backup and best weights (labkit.train.callbacks): every epoch where
writing is cheap, less often where writing costs more than the epochs take (a fast GPU)."""
import json

import keras
import numpy as np
import pytest

from labkit.train import callbacks as cb
from test_train import StandInClock as Clock


def test_cheap_writes_happen_every_epoch_costly_ones_once_the_training_outweighs_them():
    clock = Clock()
    schedule = cb.SaveSchedule(clock)
    schedule.start()
    assert schedule.due()                       # the first write: its cost is not known yet
    schedule.saved(cb.BACKUP_ALWAYS_SECONDS / 2)
    clock.now += 0.01
    assert schedule.due()                       # cheap: every epoch, however short
    schedule.saved(1.0)                         # costly: due after 1.0 / BACKUP_COST_SHARE s of training
    clock.now += 1.0 / cb.BACKUP_COST_SHARE - 0.5
    assert not schedule.due()
    clock.now += 0.5 + 1e-9
    assert schedule.due()
    schedule.saved(100.0)                       # very costly: still at most BACKUP_MAX_GAP_SECONDS apart
    clock.now += cb.BACKUP_MAX_GAP_SECONDS
    assert schedule.due()


@pytest.mark.parametrize("epoch, write, expected", [(5.0, 0.1, 1.0), (0.5, 1.0, 0.05), (20.0, 1.0, 1.0),
                                                    (30.0, 50.0, 0.25)])
def test_writes_per_epoch_follows_the_schedule(epoch, write, expected):
    assert cb.writes_per_epoch(epoch, write) == pytest.approx(expected)


class DueAt(cb.SaveSchedule):
    """A schedule due at the end of the given epochs only (counted by the backup's questions)."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs, self.asked = set(epochs), -1

    def due(self):
        self.asked += 1
        return self.asked in self.epochs


class Seen(keras.callbacks.Callback):
    def __init__(self, path):
        super().__init__()
        self.path, self.existed = path, []

    def on_epoch_end(self, epoch, logs=None):
        self.existed.append(self.path.is_file())


def _fit(tmp_path, schedule, epochs, val_accuracies, extra=()):
    """A small model 'trained' for ``epochs`` with the given validation accuracies (``extra``:
    more callbacks, after the validation stand-in)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = np.random.default_rng(0).random((8, 4)), np.zeros(8, int)

    class Fake(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_accuracy"] = val_accuracies[epoch]

    best = cb.BestWeights(tmp_path / "best.weights.h5", "val_accuracy", schedule)
    seen = Seen(tmp_path / "best.weights.h5")
    backup = cb.TimedBackup(tmp_path / "backup", schedule)
    model.fit(x, y, epochs=epochs, verbose=0, callbacks=[Fake(), *extra, backup, best, seen])
    return model, seen


def test_best_weights_are_written_with_the_backup_and_at_the_end(tmp_path):
    _, seen = _fit(tmp_path, DueAt({1}), 4, [0.2, 0.5, 0.9, 0.4])
    assert seen.existed == [False, True, True, True]     # written with the backup of epoch 1, not before
    meta = json.loads((tmp_path / "backup" / "training_metadata.json").read_text())
    assert meta["epoch"] == 4                            # the last epoch always writes the backup
    assert json.loads((tmp_path / "best.json").read_text()) == {"monitor": "val_accuracy", "value": 0.9, "epoch": 2}
    assert not list(tmp_path.glob(".*tmp*"))             # no temporary file left behind


def test_the_written_best_weights_are_those_of_the_best_epoch(tmp_path):
    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.weights = self.model.get_weights()

    snap = Snapshot()
    model, _ = _fit(tmp_path, DueAt(set()), 3, [0.1, 0.8, 0.3], extra=[snap])
    final = model.get_weights()
    model.load_weights(str(tmp_path / "best.weights.h5"))
    for kept, best, last in zip(model.get_weights(), snap.weights, final):
        np.testing.assert_array_equal(kept, best)
        assert not np.array_equal(kept, last)


def test_a_resumed_run_replaces_the_best_weights_only_with_a_better_epoch(tmp_path):
    import shutil

    _fit(tmp_path, DueAt({0, 1}), 2, [0.3, 0.7])
    before = (tmp_path / "best.weights.h5").stat().st_mtime_ns
    shutil.rmtree(tmp_path / "backup")                     # train again, with the best weights kept
    _, seen = _fit(tmp_path, DueAt({0, 1}), 2, [0.5, 0.6])  # worse than the 0.7 on disk
    assert seen.existed == [True, True] and (tmp_path / "best.weights.h5").stat().st_mtime_ns == before
    shutil.rmtree(tmp_path / "backup")
    _fit(tmp_path, DueAt({0}), 2, [0.75, 0.6])
    assert json.loads((tmp_path / "best.json").read_text())["value"] == 0.75
