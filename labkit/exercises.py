"""Checks for the labs' exercises, used by their public and hidden tests.

A student's network is checked against numbers and structure, never against a call to labkit's
own builder, and a submission that calls the reference gets no credit:

    net = exercises.own(my_alexnet, num_classes=1000, input_shape=(227, 227, 3))   # AssertionError if
                                                                                 # it calls the reference
    exercises.assert_same_function(net, models.build("alexnet", num_classes=1000))  # same weights -> same outputs
    exercises.structure(net)   # DataFrame: one row per layer (kind, output shape, activation, kernel ...)
    exercises.assert_trained(run, my_alexnet)   # the training run trained this very network
    crop = exercises.by_hand(random_crop, image, 224, rng)   # AssertionError if it calls labkit.augment's

Every failure is an ``AssertionError`` whose message tells the student what to change.
"""
from __future__ import annotations

import keras
import numpy as np
import pandas as pd

from labkit.models.port import port_weights
from labkit.models.provenance import calls_to, fingerprint, float32_policy, reference_calls


def own(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, checked to be the student's own work: it must not call labkit's
    reference networks or blocks (``labkit.models.provenance``) and must return something."""
    name = getattr(fn, "__name__", "your function")
    result, called = reference_calls(fn, *args, **kwargs)
    assert not called, (
        f"no credit: {name} calls labkit's reference ({', '.join(called[:3])}). Build it yourself from "
        "keras.layers and your own functions; labkit's layers (labkit.models.layers) are allowed.")
    assert result is not None, f"{name} returns nothing yet"
    from labkit.models.provenance import functional

    return functional(result) if isinstance(result, keras.Model) else result


def by_hand(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, checked to be written by hand: it must not call labkit's own
    versions, which are the check (``by_hand_references``). It must return something."""
    name = getattr(fn, "__name__", "your function")
    result, called = calls_to(by_hand_references(), fn, *args, **kwargs)
    assert not called, (
        f"no credit: {name} calls labkit's own version ({', '.join(called)}), which is what your answer is "
        "checked against. Write it with NumPy.")
    assert result is not None, f"{name} returns nothing yet"
    return result


def by_hand_references() -> tuple:
    """What labkit already computes that an answer "by hand" must not call: AlexNet's
    augmentations, lab 10's explanations, the output-size formula, freezing up to a layer, and
    local response normalisation (allowed as a layer in a network, not as the answer to ``lrn``)."""
    from labkit import augment, inspect, visualize
    from labkit.models import transfer
    from labkit.models.layers import LocalResponseNormalization

    return (augment.random_crop_and_flip, augment.rgb_pca, augment.pca_color_augment, augment.enlarge,
            visualize.occlusion, visualize.saliency, visualize.grad_cam, inspect.conv_output_size,
            transfer.freeze_up_to, transfer.layers_up_to, LocalResponseNormalization)


def model_of(fn, input_shape, *args, **kwargs) -> keras.Model:
    """A block function ``fn(x, *args, **kwargs)`` (``vgg_stage``, ``inception``, ``basic_block``)
    as a model from a ``keras.Input(input_shape)``, checked with ``own``."""
    inputs = keras.Input(tuple(input_shape))
    outputs = own(fn, inputs, *args, **kwargs)
    return keras.Model(inputs, outputs)


def _activation(layer) -> str | None:
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None) if activation is not None else None
    return None if name in (None, "linear") else name


def _activation_layer(layer) -> str | None:
    """What a layer that only applies an activation applies (``ReLU()``, ``Activation("relu")``,
    ``Softmax()``), or None."""
    if isinstance(layer, keras.layers.ReLU):
        plain = layer.max_value is None and not layer.negative_slope and not layer.threshold
        return "relu" if plain else None
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    if isinstance(layer, keras.layers.Activation):
        return _activation(layer)
    return None


def _producer(layer):
    """The one layer whose output is ``layer``'s only input, or None."""
    try:
        (node,) = layer._inbound_nodes
        (tensor,) = node.input_tensors
        return tensor._keras_history[0]
    except (ValueError, AttributeError, IndexError):
        return None


def structure(model: keras.Model) -> pd.DataFrame:
    """One row per layer, in the model's order: ``kind`` (class name), ``output`` (shape without
    the batch), ``activation``, and for convolutions and pools ``kernel``, ``strides``, ``padding``,
    for dense and convolutions ``units`` (filters), ``bias``.

    Written by function, not by spelling: a layer that only applies an activation (``ReLU()``,
    ``Activation("relu")``, ``Softmax()``) right after another layer is that layer's
    ``activation``, as ``Conv2D(..., activation="relu")`` would be; a ``Sequential`` model reads
    like the same functional one."""
    from labkit.models.provenance import functional

    model = functional(model)
    rows, row_of = [], {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        applies, producer = _activation_layer(layer), _producer(layer)
        if applies and producer is not None and id(producer) in row_of and len(producer._outbound_nodes) == 1:
            folded = rows[row_of[id(producer)]]
            if folded["activation"] is None:
                folded["activation"] = applies
                row_of[id(layer)] = row_of[id(producer)]
                continue
        output = layer.output
        shapes = [tuple(t.shape[1:]) for t in output] if isinstance(output, (list, tuple)) else tuple(output.shape[1:])
        row_of[id(layer)] = len(rows)
        rows.append({
            "kind": type(layer).__name__,
            "output": shapes,
            "activation": _activation(layer) or applies,
            "kernel": getattr(layer, "kernel_size", getattr(layer, "pool_size", None)),
            "strides": getattr(layer, "strides", None),
            "padding": getattr(layer, "padding", None),
            "units": getattr(layer, "filters", getattr(layer, "units", None)),
            "bias": getattr(layer, "use_bias", None),
            "rate": getattr(layer, "rate", None),
        })
    return pd.DataFrame(rows)


def _outputs(model, images) -> list[np.ndarray]:
    out = model(images, training=False)
    return [keras.ops.convert_to_numpy(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def assert_same_function(mine: keras.Model, reference: keras.Model, images=None, atol: float = 1e-4,
                         seed: int = 0) -> float:
    """Copy ``reference``'s weights into ``mine`` (``labkit.models.port_weights``: layer by layer,
    in order) and check that both compute the same outputs on the same random images. Returns the
    largest difference. ``mine``'s weights are overwritten."""
    try:
        port_weights(reference, mine)
    except ValueError as err:
        raise AssertionError(f"your layers do not line up with the reference's: {err} Build the layers in the "
                             "order the exercise gives, with the same kinds and sizes.") from None
    if images is None:
        shape = tuple(reference.inputs[0].shape[1:])
        images = np.random.default_rng(seed).normal(size=(2, *shape)).astype("float32")
    theirs, ours = _outputs(reference, images), _outputs(mine, images)
    assert len(ours) == len(theirs), f"{len(ours)} outputs, expected {len(theirs)}"
    worst = 0.0
    for i, (a, b) in enumerate(zip(theirs, ours)):
        assert a.shape == b.shape, f"output {i} has shape {b.shape[1:]}, expected {a.shape[1:]}"
        scale = max(1.0, float(np.abs(a).max()))
        worst = max(worst, float(np.abs(a - b).max()) / scale)
    assert worst <= atol, (
        f"with the reference's weights your network computes something else (largest difference {worst:.3g}). "
        "Check the order of the layers, the activations, the padding of strided layers and the pooling.")
    return worst


def assert_trained(run, builder) -> None:
    """The training ``run`` trained ``builder``'s network as it is now: not labkit's reference
    (which ``train`` falls back to when the builder is unfinished), and not an earlier version.
    ``run`` is a ``labkit.train.Run``, or its folder: then the record on disk is checked, which
    is what instructors grade."""
    import json
    from pathlib import Path

    from labkit.data import NUM_CLASSES

    if isinstance(run, (str, Path)):
        record = json.loads((Path(run) / "results.json").read_text())
        network = {"source": "labkit", "fingerprint": None, "note": None, **(record.get("network") or {})}
    else:
        record, network = run.results, run.network
    assert network["source"] == "own", f"the training run trained labkit's reference network, not yours: {network['note']}"
    config, size = record["config"], record["image_size"]
    with float32_policy():  # as train() built it
        net = own(builder, num_classes=len(config["classes"]) if config.get("classes") else NUM_CLASSES,
                  input_shape=(size, size, 3), **(config.get("model_options") or {}))
    assert fingerprint(net) == network["fingerprint"], (
        f"the run trained an earlier version of {getattr(builder, '__name__', 'your network')}: run the "
        "training cell again to train this one")
