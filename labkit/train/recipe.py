"""How a network learns: the optimizer, its learning-rate schedule and the loss, as Keras objects.

A recipe is a function of the run's length that returns a ``Recipe``; the labs write theirs as
Keras code and pass it to ``train``:

    def paper_recipe(epochs, steps_per_epoch):
        return Recipe(
            optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, weight_decay=5e-4),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            callbacks=[keras.callbacks.ReduceLROnPlateau("val_accuracy", mode="max", factor=0.1, patience=5)])

    labkit.train.train("alexnet", recipe=paper_recipe)

``train`` calls it with the epochs the run will have (after the time budget chose them) and its
steps per epoch, so a schedule can span the whole run. Without a recipe, ``profile_recipe(cfg)``
builds the one that ``TrainConfig`` describes (the profile's choice for the model).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json

import keras

from labkit.models.googlenet import AUX_LOSS_WEIGHT
from labkit.train.config import TrainConfig


@dataclasses.dataclass
class Recipe:
    """What ``train`` compiles with. ``callbacks`` run during ``fit`` (e.g. ``ReduceLROnPlateau``);
    ``aux_loss_weight`` weighs the auxiliary heads' losses of a network with several outputs
    (GoogLeNet section 5: 0.3), the main output's weighs 1."""

    optimizer: keras.optimizers.Optimizer
    loss: keras.losses.Loss
    callbacks: list = dataclasses.field(default_factory=list)
    aux_loss_weight: float = AUX_LOSS_WEIGHT

    def __post_init__(self):
        if not isinstance(self.optimizer, keras.optimizers.Optimizer):
            raise TypeError(f"Recipe's optimizer must be a Keras optimizer such as keras.optimizers.SGD(...), "
                            f"got {type(self.optimizer).__name__}.")
        if not (isinstance(self.loss, keras.losses.Loss) or callable(self.loss)):
            raise TypeError(f"Recipe's loss must be a Keras loss such as keras.losses.SparseCategoricalCrossentropy(), "
                            f"got {type(self.loss).__name__}.")
        self.callbacks = list(self.callbacks or [])
        for callback in self.callbacks:
            if not isinstance(callback, keras.callbacks.Callback):
                raise TypeError(f"Recipe's callbacks must be Keras callbacks, got {type(callback).__name__}.")

    @property
    def uses_ema(self) -> bool:
        """Whether the optimizer keeps a moving average of the weights (validated and kept)."""
        return bool(getattr(self.optimizer, "use_ema", False))

    def describe(self) -> dict:
        """The recipe as data, for the run record: Keras' configs of the optimizer and loss, and the
        callbacks' settings."""
        def settings(callback):
            return {k: v for k, v in vars(callback).items()
                    if not k.startswith("_") and isinstance(v, (int, float, str, bool, type(None)))}

        loss = (keras.losses.serialize(self.loss) if isinstance(self.loss, keras.losses.Loss)
                else getattr(self.loss, "__name__", str(self.loss)))
        optimizer = keras.optimizers.serialize(self.optimizer)
        optimizer["config"].pop("name", None)  # Keras numbers them: sgd, sgd_1, ... a new one each call
        return {"optimizer": optimizer, "loss": loss,
                "callbacks": [{"class_name": type(c).__name__, **settings(c)} for c in self.callbacks],
                "aux_loss_weight": self.aux_loss_weight}


def as_recipe_function(recipe):
    """``recipe`` as a function of ``(epochs, steps_per_epoch)``: a function is kept, a ``Recipe``
    (no schedule that depends on the run's length) is wrapped."""
    if isinstance(recipe, Recipe):  # a fresh optimizer and callbacks each time (a budget that shortens the run compiles again)
        return lambda epochs, steps_per_epoch: Recipe(
            type(recipe.optimizer).from_config(recipe.optimizer.get_config()), recipe.loss,
            [copy.copy(c) for c in recipe.callbacks], recipe.aux_loss_weight)
    if callable(recipe):
        return recipe
    raise TypeError("recipe must be a function recipe(epochs, steps_per_epoch) that returns a "
                    f"labkit.train.Recipe, or a Recipe; got {type(recipe).__name__}.")


def make(recipe_fn, epochs: int, steps_per_epoch: int) -> Recipe:
    """Call a recipe function and check what it returns."""
    made = recipe_fn(epochs=epochs, steps_per_epoch=steps_per_epoch)
    if not isinstance(made, Recipe):
        raise TypeError(f"the recipe function returned {type(made).__name__}, not a labkit.train.Recipe: "
                        "end it with return Recipe(optimizer=..., loss=...).")
    if made.optimizer.built:
        raise ValueError("the recipe's optimizer already belongs to a model: create it inside the recipe "
                         "function (optimizer=keras.optimizers.SGD(...)), so that each run gets its own.")
    return made


def fingerprint(recipe_fn, epochs: int = 100, steps_per_epoch: int = 100) -> str:
    """Eight hex digits that identify what a recipe function does (for a run of ``epochs`` x
    ``steps_per_epoch`` steps); equal recipes give equal fingerprints, whatever their code looks like."""
    text = json.dumps(make(recipe_fn, epochs, steps_per_epoch).describe(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


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


def _loss(cfg: TrainConfig):
    if cfg.mixing != "none":  # mixed (soft) labels
        return keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
    if cfg.label_smoothing > 0:
        return SmoothedSparseCrossentropy(cfg.num_classes, cfg.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


def profile_recipe(cfg: TrainConfig, monitor: str = "val_accuracy"):
    """The recipe ``cfg`` describes, as a recipe function: its optimizer and loss, and for SGD
    the division of the learning rate by 10 when ``monitor`` stops improving (``cfg.plateau_patience``
    epochs)."""
    def recipe(epochs: int, steps_per_epoch: int) -> Recipe:
        callbacks = []
        if cfg.optimizer == "sgd" and cfg.train_split == "train":
            callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode="max", factor=0.1,
                                                               patience=cfg.plateau_patience, min_lr=1e-5))
        return Recipe(make_optimizer(dataclasses.replace(cfg, epochs=epochs), steps_per_epoch), _loss(cfg), callbacks)
    return recipe
