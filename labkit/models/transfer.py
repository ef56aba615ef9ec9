"""Transfer learning on labkit's networks: which layers come "up to" a layer, copying a trained
network's first layers into a new one, freezing them.

Layers are named as in the papers, so "up to conv3" means conv1, pool1, conv2_x and conv3_x of a
ResNet (``conv3_block2_out`` and all), conv1_1..conv3_x of a VGG, and conv1..conv3 of AlexNet:
a layer matches ``name`` if it is called ``name`` or ``name_<anything>``; the last match ends
the range.
"""
from __future__ import annotations

import keras

from labkit.models.port import port_weights, weighted_layers


def _matches(layer_name: str, name: str) -> bool:
    return layer_name == name or layer_name.startswith(name + "_")


def layers_up_to(model: keras.Model, name: str) -> list:
    """The model's layers from the input up to and including the last one that ``name`` names."""
    found = [i for i, layer in enumerate(model.layers) if _matches(layer.name, name)]
    if not found:
        stages = sorted({layer.name.split("_")[0] for layer in model.layers if layer.weights})
        raise ValueError(f"{model.name} has no layer named {name!r} (or {name}_...); it has e.g. "
                         f"{', '.join(stages)}.")
    return model.layers[: found[-1] + 1]


def classifier(model: keras.Model) -> keras.layers.Layer:
    """The last weighted layer: the classifier a new task replaces."""
    return weighted_layers(model)[-1]


def copy_up_to(source: keras.Model, target: keras.Model, name: str | None = None) -> list[tuple[str, str]]:
    """Copy ``source``'s weights into ``target`` (the same architecture) up to and including
    layer ``name``; the rest of ``target`` keeps its own (new) values. ``name=None``: everything,
    except the classifier when the two have different numbers of classes. Returns the pairs
    copied, as ``port_weights``."""
    if name is None:
        same_head = tuple(classifier(source).weights[0].shape) == tuple(classifier(target).weights[0].shape)
        keep = None if same_head else {id(layer) for layer in weighted_layers(target)[:-1]}
    else:
        keep = {id(layer) for layer in layers_up_to(target, name)}
    return port_weights(source, target, only=keep)


def freeze_up_to(model: keras.Model, name: str) -> list[str]:
    """Freeze the layers up to and including ``name``: their weights stop changing, and their
    batch norms run in inference mode (Keras does that for a frozen ``BatchNormalization``).
    Returns the names of the frozen layers that have weights."""
    frozen = []
    for layer in layers_up_to(model, name):
        layer.trainable = False
        if layer.weights:
            frozen.append(layer.name)
    return frozen


def freeze_batch_norm(model: keras.Model) -> list[str]:
    """Every batch norm in inference mode, its scale and offset fixed: how one fine-tunes a
    pretrained network on small batches, whose statistics would wreck the trained ones."""
    frozen = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
            frozen.append(layer.name)
    return frozen
