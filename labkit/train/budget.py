"""Time budgets that hold on any machine: choose the number of epochs from measured speed.

A profile states how many minutes a lab's whole run may take (``budget_minutes``). Before
training, ``train()`` times a few training steps of the run's own model inside ``fit`` (the step
that the run then reuses, so a compiled step is compiled once) and a few inference steps, puts
the model back exactly as it was, then chooses the most epochs, up to the recipe's, that fit the
budget:

    elapsed so far + epochs x (training pass + validation pass + checkpoints)
                   + final evaluation <= SAFETY x budget

The schedule (cosine or lr / 10 on plateau) is then set for that length (a shortened run
compiles its step again, for the shorter schedule). An explicit
``epochs`` wins over the budget. The choice is written to ``budget.json`` in the run folder
before training, so a resumed run keeps it, and to the run record.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import keras

from labkit.train.callbacks import writes_per_epoch
from labkit.train.records import write_json_atomically

#: the final evaluation: the test split once, and again as 10 crops (AlexNet's test views)
FINAL_EVALUATION_PASSES = 11
#: saving the model, figures and record after training (seconds)
FINISHING_SECONDS = 10.0
#: the share of the budget that is planned: the rest absorbs what the probe cannot see (a host
#: that slows down for a while, callbacks). Measured: GoogLeNet planned to the full 15 minutes
#: without it and took 16 min 23 s (2026-11-27)
SAFETY = 0.93
#: checkpoints written each time the backup is due: the backup (BackupAndRestore) and the best
#: weights (``labkit.train.callbacks``: not every epoch where writing costs more than training)
CHECKPOINTS_PER_EPOCH = 2


@dataclasses.dataclass
class Budget:
    """The budget, what was measured, and the epochs chosen."""

    minutes: float
    train_images_per_second: float       # measured, this machine, this model and size
    inference_images_per_second: float   # measured
    recipe_epochs: int                   # the recipe's length (the most the budget may choose)
    epochs: int                          # chosen
    seconds_per_epoch: float             # estimated: training pass + validation pass + checkpoints
    setup_seconds: float                 # spent before the first epoch (data, probe, ...)
    full_length_val_accuracy: float | None = None   # what the recipe's full length reached (profile)
    checkpoint_seconds: float = 0.0      # measured: writing the weights once

    @property
    def shortened(self) -> bool:
        return self.epochs < self.recipe_epochs

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        text = (f"time budget {self.minutes:g} min: this machine trains at "
                f"{self.train_images_per_second:.1f} img/s, about {self.seconds_per_epoch:.0f} s an epoch, "
                f"so {self.epochs} of the recipe's {self.recipe_epochs} epochs fit")
        if self.shortened:
            text += f" ({1 - self.epochs / self.recipe_epochs:.0%} shorter than the full recipe"
            if self.full_length_val_accuracy is not None:
                text += (f", which reached {self.full_length_val_accuracy:.1%} validation accuracy; "
                         "expect less from this run")
            text += ")"
        return text


def seconds_per_step(step, steps: int = 4, warmup: int = 2, clock=time.perf_counter) -> float:
    """Mean seconds of ``step()`` over ``steps`` calls, after ``warmup`` calls (which compile)."""
    for _ in range(warmup):
        step()
    start = clock()
    for _ in range(steps):
        step()
    return max(clock() - start, 1e-9) / steps


class _StepClock(keras.callbacks.Callback):
    """The time at the end of each training step (of each compiled call, with several steps a
    call), once the step has finished: reading its loss waits for it."""

    def __init__(self, clock):
        super().__init__()
        self.clock, self.ends = clock, []

    def on_train_batch_end(self, batch, logs=None):
        float((logs or {}).get("loss", 0.0))   # backends dispatch asynchronously: wait for the step
        self.ends.append((batch, self.clock()))


def seconds_per_training_step(model, batches, steps: int = 4, warmup: int = 2, clock=time.perf_counter) -> float:
    """Mean seconds of one training step of the compiled ``model``, timed inside ``model.fit`` on
    ``batches`` (endless, e.g. ``labkit.data.first_batch_repeated``): ``steps`` compiled calls
    after ``warmup`` (which compile). It is the step that fitting the run runs, so the run
    reuses what this compiled. ``fit`` changes the model: keep its state and put it back
    (``labkit.train.model.model_state``)."""
    timer = _StepClock(clock)
    calls = warmup + steps
    model.fit(batches, epochs=1, steps_per_epoch=calls * model.steps_per_execution, callbacks=[timer],
              verbose=0, shuffle=False)
    (first, start), (last, end) = timer.ends[warmup - 1], timer.ends[-1]
    return max(end - start, 1e-9) / (last - first)


def choose_epochs(minutes: float, elapsed: float, train_rate: float, inference_rate: float,
                  train_images: int, val_images: int, test_images: int, recipe_epochs: int,
                  checkpoint_seconds: float = 0.0) -> tuple[int, float]:
    """``(epochs, seconds_per_epoch)``: the most epochs, at least 1 and at most
    ``recipe_epochs``, whose training and validation passes and checkpoints fit in what is left
    of ``SAFETY * minutes`` after ``elapsed`` seconds and the final evaluation."""
    passes = train_images / train_rate + val_images / inference_rate
    per_epoch = passes + CHECKPOINTS_PER_EPOCH * checkpoint_seconds * writes_per_epoch(passes, checkpoint_seconds)
    final = FINAL_EVALUATION_PASSES * test_images / inference_rate + FINISHING_SECONDS
    left = SAFETY * minutes * 60.0 - elapsed - final
    return max(1, min(recipe_epochs, math.floor(left / per_epoch))), per_epoch


def save(budget: Budget, path: Path) -> None:
    write_json_atomically(path, budget.as_dict())


def load(path: Path) -> Budget | None:
    """The budget a run chose before it was interrupted, or None."""
    try:
        return Budget(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
