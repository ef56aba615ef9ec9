"""``train()``: one call that trains a labkit model on OxFlower17, evaluates it and writes its
run folder, on any Keras backend. Safe to re-run: an interrupted run resumes from its last
backup (``labkit.train.callbacks.TimedBackup``), a finished one is returned, not retrained.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from labkit import backend, places
from labkit import data as lkdata
from labkit.data.decode import default_decoder
from labkit.profiles import get_profile
from labkit.train import budget as lkbudget
from labkit.train.callbacks import BestWeights, EpochTimer, SaveSchedule, TimedBackup
from labkit.train.config import TrainConfig, check, make_config, run_name, same_config
from labkit.train.inputs import (channel_statistics, datasets, epoch_steps, split_sizes, training_arrays,
                                 training_batches, training_images)
from labkit.train.model import (build_training_model, compile_model, model_state, set_model_state, set_precision,
                                val_accuracy_key)
from labkit.train.network import choose_network
from labkit.train.recipe import as_recipe_function, profile_recipe
from labkit.train.recipe import fingerprint as recipe_fingerprint
from labkit.train.records import PREDICTIONS, Run, load_run, read_history, results, write_run


#: set (to anything) while grading by run records: a run that would have to train is refused
NO_TRAINING_VAR = "LABKIT_NO_TRAINING"


class TrainingRefused(RuntimeError):
    """Training was asked for where only finished run records may be read (``$LABKIT_NO_TRAINING``)."""


@contextlib.contextmanager
def _one_at_a_time(out: Path):
    """One ``train()`` per run folder at a time, across processes (two notebooks, or two test
    workers, asking for the same run): the second waits, then finds the finished run. A lock
    file held with ``fcntl.flock``; where that does not exist (Windows), no lock."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[labkit.train] another process is training {out}; waiting for it to finish", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class OutOfMemoryError(RuntimeError):
    """The accelerator ran out of memory; the message says which settings to lower."""


def _out_of_memory(cfg: TrainConfig, backup: Path) -> OutOfMemoryError:
    smaller = max(1, cfg.batch_size // 2)
    return OutOfMemoryError(
        f"The {'GPU' if backend.gpu_count() else 'machine'} ran out of memory training {cfg.model} at "
        f"{cfg.image_size} px with batch size {cfg.batch_size}. Lower the batch size (batch_size={smaller}, "
        f"--batch-size {smaller}) or the image size, or close other notebooks that hold GPU memory "
        "(Colab: Runtime > Restart session), then run the same call again. Nothing saved is lost: "
        f"finished epochs are kept in {backup}, and a run with the same settings resumes from them.")


def _plan_budget(cfg: TrainConfig, started: float, model, inference, probe_ds, index, train_images: int) -> lkbudget.Budget:
    """The epochs that fit ``cfg.budget_minutes``, measured on the run's own compiled model: its
    training step inside ``fit`` (which the run then reuses: compiled once), its inference step
    and one checkpoint. Everything the measurement changed is put back, and it draws its batch
    from ``probe_ds``, a training pipeline of its own, so the run starts exactly as it would
    without a budget."""
    kept = model_state(model)
    repeated = lkdata.first_batch_repeated(probe_ds)
    train_step = lkbudget.seconds_per_training_step(model, repeated)
    # at once: fit's end may have made weights and optimizer share arrays (with ema, Keras copies the
    # average into the weights), which the next compiled call would donate on JAX
    set_model_state(model, kept)
    images = np.asarray(next(iter(repeated))[0])
    batch = images.shape[0]
    floats = images.astype("float32") / 255.0
    infer_step = lkbudget.seconds_per_step(lambda: inference.predict_on_batch(floats))
    with tempfile.TemporaryDirectory() as tmp:  # what one checkpoint costs (weights and optimizer state)
        saving = time.perf_counter()
        model.save_weights(str(Path(tmp) / "probe.weights.h5"))
        checkpoint = time.perf_counter() - saving
    splits = split_sizes(cfg, index)
    val_images = splits["val"] if cfg.train_split == "train" else 0
    epochs, per_epoch = lkbudget.choose_epochs(
        cfg.budget_minutes, time.perf_counter() - started, batch / train_step, batch / infer_step,
        train_images, val_images, splits["test"], cfg.epochs, checkpoint)
    expected = get_profile(cfg.profile).expected_val_accuracy.get(cfg.model)
    return lkbudget.Budget(cfg.budget_minutes, batch / train_step, batch / infer_step, cfg.epochs, epochs,
                           per_epoch, time.perf_counter() - started, expected, checkpoint)


def _recipe_tag(cfg: TrainConfig, recipe_fn, outputs: int) -> str | None:
    """None when ``recipe_fn`` does what the profile's recipe for ``cfg`` does, else ``custom-<fingerprint>``."""
    if recipe_fn is None:
        return None
    mine = recipe_fingerprint(recipe_fn)
    return None if mine == recipe_fingerprint(profile_recipe(cfg, val_accuracy_key(outputs))) else f"custom-{mine}"


def train(model: str = "resnet18", *, builder=None, recipe=None, profile=None, epochs=None, image_size=None,
          batch_size=None, train_data=None, out_dir=None, data_dir=None, overwrite: bool = False,
          verbose: int | str = "auto", callbacks=(), **settings) -> Run:
    """Train ``model`` on OxFlower17 with the active profile, evaluate it, write its run folder.

    ``builder``: your own network for ``model`` (``labkit.train.network``): a function
    ``builder(num_classes=, input_shape=, **model_options)`` that returns a ``keras.Model``. If it
    is not finished, labkit's reference network is trained instead, and the output and the record
    say so. ``recipe``: the optimizer, schedule and loss as Keras code, a function
    ``recipe(epochs, steps_per_epoch)`` that returns a ``Recipe`` (``labkit.train.recipe``); default:
    the profile's. ``train_data``: ``(images, labels)`` to train on instead of the training split's
    images, e.g. a set enlarged by hand (``labkit.augment.enlarge``): uint8 at the run's image size,
    labels 0..16; validation and test stay OxFlower17's. ``settings`` are ``TrainConfig`` fields (``optimizer``, ``learning_rate``,
    ``augmentation``, ``seed``, ``partition``, ``model_options``, ``steps_per_epoch``,
    ``budget_minutes`` ...).
    """
    started = time.perf_counter()
    cfg = make_config(model, profile, epochs=epochs, image_size=image_size, batch_size=batch_size,
                      **{**settings, "recipe": "custom" if recipe is not None else None})
    network = choose_network(cfg, builder)
    recipe_fn = as_recipe_function(recipe) if recipe is not None else None
    cfg = dataclasses.replace(cfg, network=network.tag, recipe=_recipe_tag(cfg, recipe_fn, network.outputs))
    arrays = None
    if train_data is not None:
        *arrays, data_tag = training_arrays(train_data, cfg.image_size, cfg.num_classes)
        cfg = dataclasses.replace(cfg, train_data=f"own-{data_tag}")
    check(cfg)
    out = Path(out_dir) if out_dir else places.outputs_dir() / run_name(cfg)
    with _one_at_a_time(out):
        results_path, history_path, backup = out / "results.json", out / "history.csv", out / "backup"
        budget_path = out / "budget.json"
        if results_path.is_file() and not overwrite:
            record = json.loads(results_path.read_text())
            if same_config(record.get("config", {}), cfg):
                print(f"[labkit.train] {out.name}: finished earlier with these settings; read back, not trained "
                      "again (overwrite=True trains it again)")
                return load_run(out, data_dir=data_dir)
            raise ValueError(f"{out} holds a finished run with other settings. Choose another out_dir, or "
                             "pass overwrite=True to replace it.")
        if os.environ.get(NO_TRAINING_VAR):
            raise TrainingRefused(f"{out.name}: no finished run record with these settings was handed in, and "
                                  "training is off here (grading by run records).")
        if overwrite and out.exists():
            for item in ("results.json", "history.csv", "best.keras", "best.weights.h5", "best.json", "budget.json",
                         "backup", PREDICTIONS):
                target = out / item
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        resuming = backup.exists() and any(backup.iterdir())
        out.mkdir(parents=True, exist_ok=True)
        if not resuming:
            history_path.unlink(missing_ok=True)

        precision = set_precision(cfg)
        backend.setup_gpu_memory()
        keras.utils.set_random_seed(cfg.seed)
        if cfg.deterministic:
            backend.enable_determinism()
        index = lkdata.oxflower17_index(data_dir, cfg.partition)
        train_ds, val_ds, test_ds = datasets(cfg, data_dir, outputs=network.outputs, train_arrays=arrays)
        # input normalisation from the images the run trains on (unshuffled: the same for every seed)
        mean, variance = channel_statistics(
            lkdata.oxflower17(cfg.train_split, cfg.image_size, cfg.batch_size, data_dir=data_dir,
                              partition=cfg.partition, shuffle=False, classes=cfg.classes,
                              images_per_class=cfg.images_per_class)
            if arrays is None else lkdata.array_batches(*arrays, cfg.batch_size))
        images = training_images(cfg, index) if arrays is None else len(arrays[1])
        full_batches_only = backend.jit_compile(cfg.jit_compile)  # inputs.datasets drops the last, smaller batch
        steps = cfg.steps_per_epoch or epoch_steps(images, cfg.batch_size, full_batches_only)

        budgeted = bool(cfg.budget_minutes) and cfg.steps_per_epoch is None
        plan = lkbudget.load(budget_path) if budgeted and resuming else None   # a resumed run keeps its plan
        run_cfg = dataclasses.replace(cfg, epochs=plan.epochs) if plan else cfg  # the schedule spans the run
        try:
            with backend.distribution_scope():
                model, inference, net, start = build_training_model(run_cfg, mean, variance, network)
                made = compile_model(model, run_cfg, steps, recipe_fn)
            if budgeted and plan is None:
                probe_ds = training_batches(cfg, data_dir, network.outputs, arrays, shuffle=False)
                plan = _plan_budget(cfg, started, model, inference, probe_ds, index, images)
                del probe_ds
                lkbudget.save(plan, budget_path)
                if plan.shortened:  # a shorter schedule: the optimizer and its compiled step again
                    run_cfg = dataclasses.replace(cfg, epochs=plan.epochs)
                    with backend.distribution_scope():
                        made = compile_model(model, run_cfg, steps, recipe_fn)
            if plan:
                print(f"[labkit.train] {plan.describe()}", flush=True)
            monitor = val_accuracy_key(model) if val_ds is not None else None
            earlier = read_history(history_path) if resuming else pd.DataFrame()
            # after a resume, only an epoch better than every earlier one may replace best.weights.h5
            best_so_far = (float(earlier[monitor].max()) if monitor and monitor in earlier
                           and (out / "best.weights.h5").is_file() else None)
            schedule = SaveSchedule()
            cbs = [
                EpochTimer(cfg.batch_size),
                *made.callbacks,  # before the backup, so that what they change (the learning rate) is saved
                # the backup outlives fit(): it is removed only once results.json exists, so a crash
                # during evaluation or saving never throws the finished training away. It is written
                # when its schedule says (every epoch unless writing costs more than the epochs do)
                TimedBackup(backup, schedule),
                # with ema: validation, the best checkpoint and the final model use the averaged weights;
                # the backup above (saved before the swap) keeps the raw ones and the average alike
                *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if made.uses_ema else []),
                # without validation (trainval) the final weights are the model: nothing to choose from;
                # the best weights are written with the backup, so they are never older than it
                *([BestWeights(out / "best.weights.h5", monitor, schedule, initial_value=best_so_far)]
                  if monitor else []),
                keras.callbacks.CSVLogger(str(history_path), append=True),
                keras.callbacks.TerminateOnNaN(),
                *callbacks,
            ]
            if resuming:
                print(f"[labkit.train] resuming from the last completed epoch in {backup} "
                      "(training that already finished is not repeated)")
            fit_started = time.perf_counter()
            model.fit(train_ds, validation_data=val_ds, epochs=run_cfg.epochs, steps_per_epoch=cfg.steps_per_epoch,
                      callbacks=cbs, verbose=verbose, shuffle=False)  # the pipeline shuffles (seeded)
            wall = time.perf_counter() - fit_started
        except Exception as err:
            if backend.is_out_of_memory(err):
                raise _out_of_memory(cfg, backup) from err
            raise

        if monitor and (out / "best.weights.h5").is_file():  # trainval: the final (averaged) weights
            model.load_weights(str(out / "best.weights.h5"))
        from labkit.evaluate import evaluate, evaluate_ten_crop

        names = lkdata.class_names(cfg.classes)
        clock = time.perf_counter()
        evaluation = evaluate(inference, test_ds, names)
        tested = time.perf_counter() - clock
        clock = time.perf_counter()
        ten_crop = evaluate_ten_crop(inference, names, "test", cfg.image_size, batch_size=cfg.batch_size,
                                     data_dir=data_dir, partition=cfg.partition, classes=cfg.classes)
        ten_tested = time.perf_counter() - clock
        history = read_history(history_path)
        record = results(cfg, net, index, history, evaluation, wall, monitor,
                         test_top1_10crop=ten_crop.top1, test_seconds=tested, test_seconds_10crop=ten_tested,
                         precision=precision, jit_compile=bool(model.jit_compile),
                         budget=plan.as_dict() if plan else None,
                         pipeline="numpy" if isinstance(train_ds, lkdata.ArrayBatches) else "tf.data",
                         decoder=default_decoder(), start=start, network=network.record(),
                         recipe=made.describe(), steps_per_epoch=steps,
                         train_data=({"images": images, "fingerprint": cfg.train_data.removeprefix("own-")}
                                     if arrays is not None else None),
                         wall_seconds=time.perf_counter() - started)
        write_run(out, record, inference, net, history, evaluation, ten_crop,
                  title=f"{cfg.model}, {cfg.profile} profile, {cfg.image_size} px")
        shutil.rmtree(backup, ignore_errors=True)
        budget_path.unlink(missing_ok=True)
        return Run(out, record, history, inference, evaluation, data_dir, ten_crop)
