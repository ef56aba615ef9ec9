"""The model a run trains, and how it is compiled with its recipe (``labkit.train.recipe``).

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
from labkit.train.config import TrainConfig
from labkit.train.network import Network
from labkit.train.recipe import Recipe, profile_recipe
from labkit.train.recipe import make as make_recipe


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
    return split_saved(keras.saving.load_model(path / "best.keras" if path.is_dir() else path), path)


def split_saved(saved: keras.Model, path="the model") -> tuple[keras.Model, keras.layers.Layer]:
    """A loaded ``best.keras`` as its architecture and its input normalisation."""
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


def build_training_model(cfg: TrainConfig, mean, variance, network: Network | None = None):
    """Returns ``(training_model, inference_model, architecture, start)`` (see the module's
    docstring); ``start`` says which weights the run started from and what it froze (None for a
    run from scratch). ``network`` (``labkit.train.network.choose_network``) builds the
    architecture; by default labkit's ``cfg.model``. Several outputs are named ``predictions``
    (the first, the main one), ``aux1``, ``aux2`` ..."""
    from labkit.augment import keras_augmentation

    # ImageNet weights for the whole backbone load while building; only a partial copy needs a second network
    whole_imagenet = cfg.weights == "imagenet" and cfg.transfer_layers is None
    net = (network or Network(cfg.model)).build(cfg, weights="imagenet" if whole_imagenet else None)
    shape = (cfg.image_size, cfg.image_size, 3)
    normalize, start = start_from(cfg, net)
    normalize = normalize or keras.layers.Normalization(mean=mean, variance=variance, name="normalize")

    raw = keras.Input(shape, dtype="uint8", name="image_uint8")
    x = keras.layers.Rescaling(1 / 255, name="to_unit_range")(raw)
    augmentation = keras_augmentation(cfg.augmentation, seed=cfg.seed)
    if augmentation is not None:
        x = augmentation(x)
    # under mixed precision, a network written without it in mind ends in a float16 softmax:
    # losses and metrics get float32 (labkit's own networks compute their softmax in float32)
    cast = any(str(t.dtype) != "float32" for t in net.outputs)
    outputs = net(normalize(x))
    if len(net.outputs) > 1:  # the heads' names for losses and metrics
        names = ["predictions"] + [f"aux{i}" for i in range(1, len(outputs))]
        outputs = [keras.layers.Activation("linear", dtype="float32", name=n)(o) if cast
                   else keras.layers.Identity(name=n)(o) for n, o in zip(names, outputs)]
    elif cast:
        outputs = keras.layers.Activation("linear", dtype="float32", name="predictions")(outputs)
    training = keras.Model(raw, outputs, name=f"{net.name}_training")

    image = keras.Input(shape, name="image")
    main = net(normalize(image))
    main = main[0] if isinstance(main, (list, tuple)) else main
    if cast:
        main = keras.layers.Activation("linear", dtype="float32", name="predictions")(main)
    inference = keras.Model(image, main, name=net.name)
    return training, inference, net, start


def _metrics(cfg: TrainConfig) -> list:
    # a task of fewer than 5 classes (``classes``) counts top-k over all of them: PyTorch's top-k
    # fails for k above the number of classes
    k = min(5, cfg.num_classes)
    if cfg.mixing != "none":  # mixed (soft) labels: training accuracy counts the larger share as right
        return [keras.metrics.CategoricalAccuracy(name="accuracy"), keras.metrics.TopKCategoricalAccuracy(k, name="top5")]
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            keras.metrics.SparseTopKCategoricalAccuracy(k, name="top5")]


def compile_model(model, cfg: TrainConfig, steps_per_epoch: int, recipe_fn=None) -> Recipe:
    """Compile with ``recipe_fn(cfg.epochs, steps_per_epoch)`` (default: ``profile_recipe(cfg)``)
    and return that ``Recipe`` (its callbacks go to ``fit``). A network with auxiliary heads
    (GoogLeNet) adds their losses with the recipe's ``aux_loss_weight``, in training only."""
    outputs = list(model.output_names)
    recipe_fn = recipe_fn or profile_recipe(cfg, val_accuracy_key(model))
    recipe = make_recipe(recipe_fn, cfg.epochs, steps_per_epoch)
    common = dict(optimizer=recipe.optimizer, jit_compile=backend.jit_compile(cfg.jit_compile),
                  steps_per_execution=cfg.steps_per_execution)
    if len(outputs) > 1:  # GoogLeNet: main + auxiliary heads
        model.compile(loss={n: recipe.loss for n in outputs},
                      loss_weights={n: (1.0 if n == "predictions" else recipe.aux_loss_weight) for n in outputs},
                      metrics={"predictions": _metrics(cfg)}, **common)
    else:
        model.compile(loss=recipe.loss, metrics=_metrics(cfg), **common)
    # the optimizer's slots (momentum, Adam's moments, EMA) now, not in the first trace of the train
    # step: a tf.function that creates variables is traced a second time (TensorFlow's trainer defers
    # building unless a distribution strategy is set), which doubled a short run's training time
    model.optimizer.build(model.trainable_variables)
    return recipe


def model_state(model) -> list:
    """Everything that training ``model`` changes, as NumPy arrays: its weights, moving statistics
    and random-number state (its augmentation's and dropout's seeds), and its optimizer's
    variables (step count, moments, weight average, loss scale). ``set_model_state`` puts it back."""
    return [keras.ops.convert_to_numpy(v.value) for v in _stateful(model)]


def set_model_state(model, state: list) -> None:
    """Put ``model_state``'s arrays back (bit for bit); metrics start again from zero."""
    variables = _stateful(model)
    if len(variables) != len(state):
        raise ValueError(f"the state holds {len(state)} arrays, the model {len(variables)} variables")
    for variable, value in zip(variables, state):
        variable.assign(value)
    model.reset_metrics()


def _stateful(model) -> list:
    return list(model.variables) + (list(model.optimizer.variables) if model.optimizer is not None else [])


def val_accuracy_key(model_or_outputs) -> str:
    """The validation accuracy a run watches: the main output's when there are auxiliary heads.
    Takes a model or its number of outputs."""
    outputs = model_or_outputs if isinstance(model_or_outputs, int) else len(model_or_outputs.outputs)
    return "val_predictions_accuracy" if outputs > 1 else "val_accuracy"
