"""Training a labkit model on OxFlower17: one call, paper defaults, safe to re-run.

    run = labkit.train.train("resnet18")            # the active profile decides the size
    run.results["test_top1"], run.history

Defaults follow the papers the slides quote (AlexNet section 5): SGD with momentum 0.9, weight
decay 5e-4, learning rate 0.01 divided by 10 when the validation accuracy stops improving.
``optimizer="adamw"`` is the modern alternative (AdamW, linear warm-up, cosine decay, label
smoothing 0.1). GoogLeNet's auxiliary classifiers add their losses with weight 0.3, in training
only.

Every run writes a folder (default ``outputs/<run-name>/``): ``results.json``,
``history.csv``, ``model_summary.txt``, ``best.keras`` (the best epoch by validation accuracy)
and figures. Re-running the same call after a crash or a Colab disconnect resumes from the
last completed epoch (Keras ``BackupAndRestore``); re-running a finished run returns its record
instead of training again (``overwrite=True`` trains afresh).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from labkit import data as lkdata
from labkit import models as lkmodels
from labkit.profiles import Profile, get_profile

RESULTS_VERSION = 1
OPTIMIZERS = ("sgd", "adamw")
# mixing two training images and their labels: mixup (Zhang et al. 2018) blends whole images,
# CutMix (Yun et al. 2019) pastes a patch of one into the other; labels mix in proportion
MIXINGS = ("none", "mixup", "cutmix")
# "train": fit on the training split, choose the epoch by validation accuracy (the labs);
# "trainval": once a recipe is chosen, fit it on training + validation images (1,020) and keep
# the final weights, the usual protocol for a final test figure (as in Nilsback & Zisserman 2006)
TRAIN_SPLITS = ("train", "trainval")


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a run; stored in ``results.json``."""

    model: str
    model_options: dict
    profile: str
    image_size: int
    batch_size: int
    epochs: int
    steps_per_epoch: int | None
    optimizer: str = "sgd"
    learning_rate: float | None = None      # sgd 0.01, adamw 1e-3
    momentum: float = 0.9
    weight_decay: float | None = None       # sgd 5e-4, adamw 0.05
    label_smoothing: float | None = None    # sgd 0, adamw 0.1
    warmup_epochs: int = 3                  # adamw only
    plateau_patience: int = 5               # sgd: epochs without improvement before lr / 10
    augmentation: str = "standard"
    seed: int = 0
    partition: int = 1
    mixed_precision: bool = False
    jit_compile: bool = False
    deterministic: bool = False              # bit-for-bit repeatable ops (slower)
    ema: bool = False                        # validate and keep an exponential moving average of the weights
    ema_momentum: float = 0.99
    mixing: str = "none"                     # none, mixup or cutmix (training batches only)
    train_split: str = "train"               # train, or trainval (no validation: final weights)

    def __post_init__(self):
        adam = self.optimizer == "adamw"
        if self.learning_rate is None:
            self.learning_rate = 1e-3 if adam else 0.01
        if self.weight_decay is None:
            self.weight_decay = 0.05 if adam else 5e-4
        if self.label_smoothing is None:
            self.label_smoothing = 0.1 if adam else 0.0


def check_arguments(model: str, image_size: int, epochs: int, batch_size: int, optimizer: str,
                    mixing: str = "none", train_split: str = "train") -> None:
    """Refuse bad arguments before any work, with messages that say what to do."""
    if model.strip().lower().replace("-", "").replace("_", "") not in lkmodels.available():
        raise ValueError(f"Unknown model {model!r}. Choose one of: {', '.join(lkmodels.available())}.")
    minimum = lkmodels.min_input_size(model)
    if not isinstance(image_size, int) or image_size < minimum:
        raise ValueError(f"{model} needs an image size of at least {minimum} pixels, got {image_size!r}.")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive whole number, got {epochs!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch size must be a positive whole number, got {batch_size!r}.")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}.")
    if mixing not in MIXINGS:
        raise ValueError(f"mixing must be one of {', '.join(MIXINGS)}, got {mixing!r}.")
    if train_split not in TRAIN_SPLITS:
        raise ValueError(f"train_split must be one of {', '.join(TRAIN_SPLITS)}, got {train_split!r}.")
    if train_split == "trainval" and optimizer != "adamw":
        raise ValueError("training on train + val leaves no validation accuracy for SGD's schedule "
                         "(lr / 10 on plateau); use the fixed cosine schedule: optimizer 'adamw'.")


def make_config(model: str, profile: str | Profile | None = None, *, epochs=None, image_size=None,
                batch_size=None, steps_per_epoch="profile", model_options=None, optimizer=None,
                augmentation=None, **settings) -> TrainConfig:
    """Fill a ``TrainConfig`` from the profile (``Profile.for_model``), then explicit arguments."""
    prof = get_profile(profile)
    name = model.strip().lower().replace("-", "").replace("_", "")
    if name not in lkmodels.available():
        raise ValueError(f"Unknown model {model!r}. Choose one of: {', '.join(lkmodels.available())}.")
    defaults = prof.for_model(name)
    recipe = {k: v for k, v in defaults.items() if k in {f.name for f in dataclasses.fields(TrainConfig)}
              and k not in ("image_size", "batch_size", "epochs", "optimizer", "augmentation")}
    settings = {"mixed_precision": prof.mixed_precision, "jit_compile": prof.jit_compile, **recipe, **settings}
    size = image_size or max(defaults["image_size"], lkmodels.min_input_size(name))
    cfg = TrainConfig(
        model=name,
        model_options=dict(model_options or {}),
        profile=prof.name, image_size=size, batch_size=batch_size or defaults["batch_size"],
        epochs=defaults["epochs"] if epochs is None else epochs,
        steps_per_epoch=prof.steps_per_epoch if steps_per_epoch == "profile" else steps_per_epoch,
        optimizer=optimizer or defaults["optimizer"], augmentation=augmentation or defaults["augmentation"],
        **settings)
    check_arguments(cfg.model, cfg.image_size, cfg.epochs, cfg.batch_size, cfg.optimizer, cfg.mixing,
                    cfg.train_split)
    return cfg


def set_precision(cfg: TrainConfig) -> str:
    """Set the Keras dtype policy for ``cfg`` (``labkit.env.precision_policy``: ``mixed_float16``
    on a GPU, ``mixed_bfloat16`` on a CPU with native bfloat16, else ``float32``); return it."""
    from labkit.env import precision_policy

    policy = precision_policy(cfg.mixed_precision)
    keras.mixed_precision.set_global_policy(policy)
    return policy


def distribution_strategy():
    """MirroredStrategy over all GPUs when there are several (each GPU gets a slice of every
    batch and gradients are averaged: AlexNet's two-GPU story done the modern way); otherwise
    the default strategy."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


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


def _datasets(cfg: TrainConfig, data_dir, outputs: int):
    """Training and validation batches (uint8 images) and test batches (float, for the inference
    model). With ``cfg.mixing`` the training and validation labels are one-hot, and training
    batches are mixed in the input pipeline (cheap blends and copies; the model's own
    augmentation layers still run on the accelerator). With ``train_split="trainval"`` the
    validation images are training images, and there are no validation batches (``None``)."""
    import tensorflow as tf

    mixer = mixing_layer(cfg.mixing, seed=cfg.seed)

    def one_hot(x, y):
        return x, tf.one_hot(y, lkdata.NUM_CLASSES)

    def mix(x, y):
        out = mixer({"images": tf.cast(x, tf.float32), "labels": y}, training=True)
        return tf.cast(tf.clip_by_value(tf.round(out["images"]), 0, 255), tf.uint8), out["labels"]

    def targets(ds):
        def to_targets(x, y):
            return (x, tuple([y] * outputs)) if outputs > 1 else (x, y)
        return ds.map(to_targets, num_parallel_calls=tf.data.AUTOTUNE)

    common = dict(image_size=cfg.image_size, partition=cfg.partition, data_dir=data_dir)
    train = lkdata.oxflower17(cfg.train_split, batch_size=cfg.batch_size, seed=cfg.seed, dtype="uint8", **common)
    val = (lkdata.oxflower17("val", batch_size=cfg.batch_size, dtype="uint8", **common)
           if cfg.train_split == "train" else None)
    test = lkdata.oxflower17("test", batch_size=cfg.batch_size, **common)  # float: for the inference model
    if mixer is not None:
        train = train.map(one_hot).map(mix, num_parallel_calls=tf.data.AUTOTUNE)
        val = val.map(one_hot) if val is not None else None
    if cfg.steps_per_epoch is not None:
        train = train.repeat()
    return targets(train), (targets(val) if val is not None else None), test


def channel_statistics(dataset, batches: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and variance over the first ``batches`` training batches (for input
    normalisation, like AlexNet's mean subtraction)."""
    images = np.concatenate([np.asarray(x) for x, _ in dataset.take(batches)])
    return images.mean(axis=(0, 1, 2)), images.var(axis=(0, 1, 2))


def build_training_model(cfg: TrainConfig, mean, variance):
    """Two models sharing one architecture and its weights:

    * training: uint8 image (as the pipeline sends it: 4x less host-to-device traffic) ->
      rescale to [0, 1] -> augmentation (training only) -> normalisation -> architecture;
    * inference: float image in [0, 1] -> normalisation -> architecture (main output only).

    Returns ``(training_model, inference_model, architecture)``.
    """
    from labkit.augment import keras_augmentation

    net = lkmodels.build(cfg.model, num_classes=lkdata.NUM_CLASSES,
                         input_shape=(cfg.image_size, cfg.image_size, 3), **cfg.model_options)
    shape = (cfg.image_size, cfg.image_size, 3)
    normalize = keras.layers.Normalization(mean=mean, variance=variance, name="normalize")

    raw = keras.Input(shape, dtype="uint8", name="image_uint8")
    x = keras.layers.Rescaling(1 / 255, name="to_unit_range")(raw)
    augmentation = keras_augmentation(cfg.augmentation, seed=cfg.seed)
    if augmentation is not None:
        x = augmentation(x)
    outputs = net(normalize(x))
    if len(net.outputs) > 1:  # keep the heads' names (predictions, aux1, aux2) for losses and metrics
        outputs = [keras.layers.Identity(name=n)(o) for n, o in zip(net.output_names, outputs)]
    training = keras.Model(raw, outputs, name=f"{net.name}_training")

    image = keras.Input(shape, name="image")
    main = net(normalize(image))
    inference = keras.Model(image, main[0] if isinstance(main, (list, tuple)) else main, name=net.name)
    return training, inference, net


def _optimizer(cfg: TrainConfig, steps_per_epoch: int):
    import keras

    # ema: Polyak averaging of the weights (Polyak & Juditsky 1992), kept by the optimizer
    ema = dict(use_ema=cfg.ema, ema_momentum=cfg.ema_momentum)
    if cfg.optimizer == "sgd":
        # Keras applies the decay decoupled: w -= lr * wd * w each step (SGD: same as L2 / 2)
        return keras.optimizers.SGD(cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **ema)
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = min(total - 1, cfg.warmup_epochs * steps_per_epoch)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else cfg.learning_rate, decay_steps=max(1, total - warmup),
        warmup_target=cfg.learning_rate if warmup else None, warmup_steps=warmup)
    return keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay, **ema)


@keras.saving.register_keras_serializable(package="labkit")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy against label-smoothed targets (Szegedy et al. 2016, Inception v3), taking
    integer labels like the rest of labkit: the true class gets 1 - eps + eps/K, the others eps/K."""

    def __init__(self, num_classes: int, label_smoothing: float = 0.1, name="smoothed_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes, self.label_smoothing = num_classes, label_smoothing

    def call(self, y_true, y_pred):
        y = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"), self.num_classes)
        return keras.losses.categorical_crossentropy(y, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "label_smoothing": self.label_smoothing}


def compile_model(model, cfg: TrainConfig, steps_per_epoch: int):
    import keras

    outputs = list(model.output_names)
    if cfg.mixing != "none":  # mixed (soft) labels: training accuracy counts the larger share as right
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy"),
                   keras.metrics.TopKCategoricalAccuracy(5, name="top5")]
    else:
        loss = (SmoothedSparseCrossentropy(lkdata.NUM_CLASSES, cfg.label_smoothing) if cfg.label_smoothing > 0
                else keras.losses.SparseCategoricalCrossentropy())
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                   keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5")]
    if len(outputs) > 1:  # GoogLeNet: main + auxiliary heads (GoogLeNet section 5: weight 0.3)
        model.compile(optimizer=_optimizer(cfg, steps_per_epoch),
                      loss={n: loss for n in outputs},
                      loss_weights={n: (1.0 if n == "predictions" else 0.3) for n in outputs},
                      metrics={"predictions": metrics}, jit_compile=cfg.jit_compile)
    else:
        model.compile(optimizer=_optimizer(cfg, steps_per_epoch), loss=loss, metrics=metrics,
                      jit_compile=cfg.jit_compile)


def _val_accuracy_key(model) -> str:
    return "val_predictions_accuracy" if len(model.outputs) > 1 else "val_accuracy"


class EpochTimer(keras.callbacks.Callback):
    """Adds ``train_seconds`` and ``images_per_second`` (training part of the epoch only) and
    ``learning_rate`` to the logs, so that ``history.csv`` records them."""

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size

    def on_epoch_begin(self, epoch, logs=None):
        self.start, self.steps, self.train_seconds = time.perf_counter(), 0, None

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1

    def on_test_begin(self, logs=None):
        if self.train_seconds is None:  # validation starts: the training part is over
            self.train_seconds = time.perf_counter() - self.start

    def on_epoch_end(self, epoch, logs=None):
        seconds = self.train_seconds or (time.perf_counter() - self.start)
        if logs is not None:
            logs["train_seconds"] = seconds
            logs["images_per_second"] = self.steps * self.batch_size / max(seconds, 1e-9)
            lr = self.model.optimizer.learning_rate
            logs["learning_rate"] = float(np.asarray(lr(self.model.optimizer.iterations) if callable(lr) else lr))


def _read_history(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame()
    # Keras' CSVLogger writes empty val_* columns when there is no validation (trainval): drop them
    history = pd.read_csv(path).dropna(axis=1, how="all")
    # an epoch written twice (crash between the log and the backup) keeps its last row
    return history.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)


@dataclasses.dataclass
class Run:
    """What a training run leaves: the model (best epoch), its history and its record."""

    out_dir: Path
    results: dict
    history: pd.DataFrame
    model: object = None
    evaluation: object = None


def same_config(stored: dict, cfg: TrainConfig) -> bool:
    """Whether a recorded config is ``cfg``; a field added to labkit after the record was written
    counts as its default, so records stay valid across versions."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    return all(stored.get(key, defaults.get(key)) == value for key, value in dataclasses.asdict(cfg).items())


def run_name(cfg: TrainConfig) -> str:
    """``<model>[_options]_<profile>_<size>px[_<optimizer>][_aug-<strength>][_<mixing>][_trainval][_seed<n>]``: the
    bracketed parts appear only where they differ from the profile's defaults for the model."""
    defaults = get_profile(cfg.profile).for_model(cfg.model)
    name = cfg.model + "".join(f"_{k}-{v}" for k, v in sorted(cfg.model_options.items()))
    name += f"_{cfg.profile}_{cfg.image_size}px"
    if cfg.optimizer != defaults["optimizer"]:
        name += f"_{cfg.optimizer}"
    if cfg.augmentation != defaults["augmentation"]:
        name += f"_aug-{cfg.augmentation}"
    if cfg.mixing != defaults.get("mixing", "none"):
        name += f"_{cfg.mixing}"
    if cfg.train_split != defaults.get("train_split", "train"):
        name += f"_{cfg.train_split}"
    if cfg.seed != 0:
        name += f"_seed{cfg.seed}"
    return name


def train(model: str = "resnet18", *, profile=None, epochs=None, image_size=None, batch_size=None,
          out_dir=None, data_dir=None, overwrite: bool = False, verbose: int | str = "auto",
          callbacks=(), **settings) -> Run:
    """Train ``model`` on OxFlower17 with the active profile, evaluate it, write its run folder.

    ``settings`` are ``TrainConfig`` fields (``optimizer``, ``learning_rate``, ``augmentation``,
    ``seed``, ``partition``, ``model_options``, ``steps_per_epoch`` ...).
    """
    cfg = make_config(model, profile, epochs=epochs, image_size=image_size, batch_size=batch_size, **settings)
    out = Path(out_dir) if out_dir else Path(lkdata.default_data_dir()).parent / "outputs" / run_name(cfg)
    results_path, history_path, backup = out / "results.json", out / "history.csv", out / "backup"
    if results_path.is_file() and not overwrite:
        results = json.loads(results_path.read_text())
        if same_config(results.get("config", {}), cfg):
            print(f"[labkit.train] {out} holds a finished run with these settings; returning it "
                  "(train(..., overwrite=True) trains again).")
            return load_run(out, data_dir=data_dir)
        raise ValueError(f"{out} holds a finished run with other settings. Choose another out_dir, or "
                         "pass overwrite=True to replace it.")
    if overwrite and out.exists():
        for item in ("results.json", "history.csv", "best.keras", "best.weights.h5", "backup"):
            target = out / item
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    resuming = backup.exists() and any(backup.iterdir())
    out.mkdir(parents=True, exist_ok=True)
    if not resuming:
        history_path.unlink(missing_ok=True)

    precision = set_precision(cfg)
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    index = lkdata.oxflower17_index(data_dir, cfg.partition)
    aux = cfg.model == "googlenet" and cfg.model_options.get("aux_classifiers", False)
    train_ds, val_ds, test_ds = _datasets(cfg, data_dir, outputs=3 if aux else 1)
    mean, variance = channel_statistics(lkdata.oxflower17(cfg.train_split, cfg.image_size, cfg.batch_size,
                                                          data_dir=data_dir, partition=cfg.partition, shuffle=False))
    fitted = {"train": ["train"], "trainval": ["train", "val"]}[cfg.train_split]
    steps = cfg.steps_per_epoch or math.ceil(int(index["split"].isin(fitted).sum()) / cfg.batch_size)

    strategy = distribution_strategy()
    with strategy.scope():
        model, inference, net = build_training_model(cfg, mean, variance)
        compile_model(model, cfg, steps)
    monitor = _val_accuracy_key(model) if val_ds is not None else None
    earlier = _read_history(history_path) if resuming else pd.DataFrame()
    # after a resume, only an epoch better than every earlier one may replace best.weights.h5
    best_so_far = (float(earlier[monitor].max()) if monitor and monitor in earlier
                   and (out / "best.weights.h5").is_file() else None)
    cbs = [
        EpochTimer(cfg.batch_size),
        # the backup outlives fit(): it is removed only once results.json exists, so a crash
        # during evaluation or saving never throws the finished training away
        keras.callbacks.BackupAndRestore(str(backup), double_checkpoint=True, delete_checkpoint=False),
        # with ema: validation, the best checkpoint and the final model use the averaged weights;
        # the backup above (saved before the swap) keeps the raw ones and the average alike
        *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if cfg.ema else []),
        # without validation (trainval) the final weights are the model: nothing to choose from
        *([keras.callbacks.ModelCheckpoint(str(out / "best.weights.h5"), monitor=monitor, mode="max",
                                           save_best_only=True, save_weights_only=True,
                                           initial_value_threshold=best_so_far)] if monitor else []),
        keras.callbacks.CSVLogger(str(history_path), append=True),
        keras.callbacks.TerminateOnNaN(),
        *callbacks,
    ]
    if cfg.optimizer == "sgd":
        cbs.insert(1, keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode="max", factor=0.1,
                                                        patience=cfg.plateau_patience, min_lr=1e-5))
    if resuming:
        print(f"[labkit.train] resuming from the last completed epoch in {backup} "
              "(training that already finished is not repeated)")
    started = time.perf_counter()
    model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, steps_per_epoch=cfg.steps_per_epoch,
              callbacks=cbs, verbose=verbose, shuffle=False)  # tf.data shuffles (seeded)
    wall = time.perf_counter() - started

    if monitor and (out / "best.weights.h5").is_file():  # trainval: the final (averaged) weights
        model.load_weights(str(out / "best.weights.h5"))
    from labkit.evaluate import evaluate, evaluate_ten_crop

    evaluation = evaluate(inference, test_ds, lkdata.CLASS_NAMES)
    ten_crop = evaluate_ten_crop(inference, lkdata.CLASS_NAMES, "test", cfg.image_size,
                                 batch_size=cfg.batch_size, data_dir=data_dir, partition=cfg.partition)
    history = _read_history(history_path)
    results = _results(cfg, net, index, history, evaluation, wall, monitor)
    results["test_top1_10crop"] = ten_crop.top1
    results["precision"] = precision
    inference.save(out / "best.keras")
    (out / "model_summary.txt").write_text(_summary_text(net))
    evaluation.per_class().to_csv(out / "per_class.csv", index=False)
    np.savetxt(out / "confusion_matrix.csv", evaluation.confusion_matrix(), fmt="%d", delimiter=",")
    _save_figures(out, history, evaluation, title=f"{cfg.model}, {cfg.profile} profile, {cfg.image_size} px")
    _write_json_atomically(results_path, results)  # its presence means the run is complete
    shutil.rmtree(backup, ignore_errors=True)
    return Run(out, results, history, inference, evaluation)


def _save_figures(out: Path, history: pd.DataFrame, evaluation, title: str) -> None:
    """learning_curves.png and confusion_matrix.png in the run folder (closed, not shown)."""
    import matplotlib.pyplot as plt

    from labkit import plots

    for name, fig in (("learning_curves.png", plots.learning_curves(history, title=title)),
                      ("confusion_matrix.png", plots.confusion_matrix(evaluation.confusion_matrix(),
                                                                      evaluation.class_names, title=title))):
        fig.savefig(out / name, dpi=110, bbox_inches="tight")
        plt.close(fig)


def load_run(out_dir, data_dir=None) -> Run:
    """A finished run folder back as a ``Run``: its record, history, best model and test evaluation."""
    from labkit.evaluate import evaluate

    out = Path(out_dir)
    if not (out / "results.json").is_file():
        raise ValueError(f"{out} holds no finished run (no results.json); train it first.")
    results = json.loads((out / "results.json").read_text())
    model = keras.models.load_model(out / "best.keras")
    test = lkdata.oxflower17("test", results["image_size"], results["batch_size"], data_dir=data_dir,
                             partition=results["partition"])
    return Run(out, results, _read_history(out / "history.csv"), model,
               evaluate(model, test, lkdata.CLASS_NAMES))


def _summary_text(model) -> str:
    lines = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line), line_length=110)
    return "\n".join(lines) + "\n"


def _write_json_atomically(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def _results(cfg, net, index, history, evaluation, wall, monitor) -> dict:
    from labkit.env import device_report

    val_col = monitor if monitor in history else "val_accuracy"
    # trainval: no validation, so no best epoch (null in the record)
    best_row = history.loc[history[val_col].idxmax()] if len(history) and val_col in history else None
    steady = history["images_per_second"].iloc[1:] if len(history) > 1 else history.get("images_per_second", pd.Series(dtype=float))
    return {
        "results_version": RESULTS_VERSION,
        "model": cfg.model,
        "model_options": cfg.model_options,
        "params": lkmodels.count_trainable(net),
        "params_incl_bn_stats": lkmodels.count_all(net),
        "profile": cfg.profile,
        "image_size": cfg.image_size,
        "batch_size": cfg.batch_size,
        "split_name": index.attrs["split_name"],
        "partition": cfg.partition,
        "epochs_run": int(len(history)),
        "seed": cfg.seed,
        "device": device_report()["device"],
        "training_seconds": float(history["train_seconds"].sum()) if "train_seconds" in history else wall,
        "train_images_per_second": float(steady.mean()) if len(steady) else None,
        "best_epoch": int(best_row["epoch"]) + 1 if best_row is not None else None,
        "best_val_accuracy": float(best_row[val_col]) if best_row is not None else None,
        "test_top1": evaluation.top1,
        "test_top5": evaluation.top5,
        "test_images": int(len(evaluation.labels)),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": dataclasses.asdict(cfg),
    }
