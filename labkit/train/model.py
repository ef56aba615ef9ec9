"""The model a run trains, and its recipe: optimizer, learning-rate schedule, loss, metrics.

Two models share one architecture and its weights:

* training: uint8 image (as the pipeline sends it) -> rescale to [0, 1] -> augmentation
  (training only) -> normalisation -> architecture;
* inference: float image in [0, 1] -> normalisation -> architecture (main output only).
"""
from __future__ import annotations

from pathlib import Path

import keras

from labkit import backend
from labkit import data as lkdata
from labkit import models as lkmodels
from labkit.models.googlenet import AUX_LOSS_WEIGHT
from labkit.train.config import TrainConfig


def set_precision(cfg: TrainConfig) -> str:
    """Set the Keras dtype policy for ``cfg`` (``labkit.env.precision_policy``: ``mixed_float16``
    on an older GPU, ``mixed_bfloat16`` on Ampere or newer and on a CPU with native bfloat16,
    else ``float32``); return it."""
    from labkit.env import precision_policy

    policy = precision_policy(cfg.mixed_precision)
    keras.mixed_precision.set_global_policy(policy)
    return policy


def load_base(path) -> tuple[keras.Model, keras.layers.Layer]:
    """A finished run's architecture and its input normalisation, from its folder or best.keras."""
    path = Path(path)
    saved = keras.saving.load_model(path / "best.keras" if path.is_dir() else path)
    nets = [layer for layer in saved.layers if isinstance(layer, keras.Model)]
    steps = [layer for layer in saved.layers[1:] if not isinstance(layer, keras.Model)]
    if len(nets) != 1 or len(steps) != 1:
        raise ValueError(f"{path} is not a labkit run's model (input -> normalisation -> network).")
    return nets[0], steps[0]


def _copy_layer(layer):
    twin = layer.__class__.from_config(layer.get_config())
    twin.build(layer.input.shape if hasattr(layer, "input") else None)
    twin.set_weights(layer.get_weights())
    return twin


def start_from(cfg: TrainConfig, net) -> tuple[keras.layers.Layer | None, dict | None]:
    """Put the starting weights into ``net`` (``cfg.init`` or ``cfg.weights``, up to
    ``cfg.transfer_layers``), then freeze what ``cfg`` says. Returns the input normalisation those
    weights were trained with (None: the training set's statistics) and what to record."""
    normalize, copied = None, []
    if cfg.transfers:
        if cfg.weights == "imagenet":
            normalize = lkmodels.preprocess(cfg.model, input_range=1.0)
            if cfg.transfer_layers is None:  # build_training_model built net with the weights already
                head = lkmodels.transfer.classifier(net).name
                copied = [(l.name, l.name) for l in lkmodels.port.weighted_layers(net) if l.name != head]
            else:
                base = lkmodels.build(cfg.model, num_classes=cfg.num_classes,
                                      input_shape=tuple(net.inputs[0].shape[1:]), weights="imagenet",
                                      **cfg.model_options)
                copied = lkmodels.copy_up_to(base, net, cfg.transfer_layers)
        else:
            base, base_normalize = load_base(cfg.init)
            normalize = _copy_layer(base_normalize)
            copied = lkmodels.copy_up_to(base, net, cfg.transfer_layers)
    frozen = lkmodels.freeze_up_to(net, cfg.freeze_until) if cfg.freeze_until else []
    if cfg.freeze_batch_norm:
        frozen = sorted(set(frozen) | set(lkmodels.freeze_batch_norm(net)), key=[l.name for l in net.layers].index)
    if not (cfg.transfers or frozen):
        return None, None
    record = {"weights": cfg.weights or str(cfg.init), "layers_copied": [b for _, b in copied],
              "frozen": frozen, "trainable_params": lkmodels.count_trainable(net),
              "frozen_params": lkmodels.count_parameters(net) - lkmodels.count_trainable(net)}
    return normalize, record


def build_training_model(cfg: TrainConfig, mean, variance):
    """Returns ``(training_model, inference_model, architecture, start)`` (see the module's
    docstring); ``start`` says which weights the run started from and what it froze (None for a
    run from scratch)."""
    from labkit.augment import keras_augmentation

    # ImageNet weights for the whole backbone load while building; only a partial copy needs a second network
    whole_imagenet = cfg.weights == "imagenet" and cfg.transfer_layers is None
    net = lkmodels.build(cfg.model, num_classes=cfg.num_classes, input_shape=(cfg.image_size, cfg.image_size, 3),
                         weights="imagenet" if whole_imagenet else None, **cfg.model_options)
    shape = (cfg.image_size, cfg.image_size, 3)
    normalize, start = start_from(cfg, net)
    normalize = normalize or keras.layers.Normalization(mean=mean, variance=variance, name="normalize")

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
    return training, inference, net, start


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int):
    """SGD with momentum and weight decay (the papers), or AdamW with linear warm-up and cosine
    decay over ``cfg.epochs`` (so a budget that shortens the run shortens the schedule too)."""
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


def loss_and_metrics(cfg: TrainConfig):
    if cfg.mixing != "none":  # mixed (soft) labels: training accuracy counts the larger share as right
        return (keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
                [keras.metrics.CategoricalAccuracy(name="accuracy"),
                 keras.metrics.TopKCategoricalAccuracy(5, name="top5")])
    loss = (SmoothedSparseCrossentropy(cfg.num_classes, cfg.label_smoothing) if cfg.label_smoothing > 0
            else keras.losses.SparseCategoricalCrossentropy())
    return loss, [keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                  keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5")]


def compile_model(model, cfg: TrainConfig, steps_per_epoch: int) -> None:
    """Compile with the recipe; GoogLeNet's auxiliary heads add their losses with
    ``AUX_LOSS_WEIGHT`` (0.3, GoogLeNet section 5), in training only."""
    outputs = list(model.output_names)
    loss, metrics = loss_and_metrics(cfg)
    common = dict(optimizer=make_optimizer(cfg, steps_per_epoch), jit_compile=backend.jit_compile(cfg.jit_compile),
                  steps_per_execution=cfg.steps_per_execution)
    if len(outputs) > 1:  # GoogLeNet: main + auxiliary heads
        model.compile(loss={n: loss for n in outputs},
                      loss_weights={n: (1.0 if n == "predictions" else AUX_LOSS_WEIGHT) for n in outputs},
                      metrics={"predictions": metrics}, **common)
    else:
        model.compile(loss=loss, metrics=metrics, **common)


def val_accuracy_key(model) -> str:
    return "val_predictions_accuracy" if len(model.outputs) > 1 else "val_accuracy"
