"""Copy weights from a reference implementation (``keras.applications``) into a labkit model.

The weighted layers of both models are paired in order, and each pair must be the same kind of
layer with the same shapes, so a builder that differs from the reference in any layer fails
loudly instead of loading half a network. Two differences are folded in exactly:

* a convolution with a bias followed by batch norm (Keras' ResNets) into labkit's bias-free
  convolution: BN(conv(x) + b) is BN(conv(x)) with the moving mean lowered by b;
* a different batch-norm epsilon (Keras' ResNets use 1.001e-5, labkit 1e-5): the moving variance
  is raised by the difference, so that variance + epsilon, all BN divides by, is unchanged.
"""
from __future__ import annotations

import keras
import numpy as np

WEIGHTED = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense, keras.layers.BatchNormalization)
# input preprocessing inside a reference model (keras.applications.EfficientNet's rescaling and
# normalisation): not part of labkit's networks, which take normalised input; not copied
PREPROCESSING = (keras.layers.Normalization,)


def weighted_layers(model: keras.Model) -> list:
    """The model's convolutions, dense and batch-norm layers, in the order they were built."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += weighted_layers(layer)
        elif isinstance(layer, WEIGHTED):
            found.append(layer)
        elif isinstance(layer, PREPROCESSING):
            continue
        elif layer.weights:
            raise ValueError(f"{model.name}: layer {layer.name} ({type(layer).__name__}) has weights that "
                             "port_weights does not know how to copy.")
    return found


def _kind(layer) -> type:
    return next(k for k in WEIGHTED if isinstance(layer, k))


def _pairs(src: list, dst: list) -> list[tuple]:
    """Layers with the same name pair up (ResNet's ``conv2_block1_1_conv``); the rest pair in
    order (VGG's ``block1_conv1`` and labkit's ``conv1_1``; ``predictions`` and ``fc``)."""
    by_name = {layer.name: layer for layer in dst}
    named = [(a, by_name[a.name]) for a in src if a.name in by_name]
    taken = {id(b) for _, b in named}
    rest_src = [a for a in src if a.name not in by_name]
    rest_dst = [b for b in dst if id(b) not in taken]
    if len(rest_src) > len(rest_dst):
        raise ValueError(f"{len(rest_src)} weighted layers of the source have no counterpart: "
                         f"{[a.name for a in rest_src[len(rest_dst):]]}.")
    return named + list(zip(rest_src, rest_dst))


def port_weights(source: keras.Model, target: keras.Model, only: set | None = None) -> list[tuple[str, str]]:
    """Copy every weight of ``source`` into ``target``; layers of ``target`` that ``source`` lacks
    (a new classifier after a ``include_top=False`` model) keep their values, as do those not in
    ``only`` (a set of ``id(layer)`` of ``target``'s layers) when it is given. Returns the
    ``(source layer, target layer)`` pairs copied. Raises ``ValueError`` where the networks differ."""
    pairs = _pairs(weighted_layers(source), weighted_layers(target))
    if only is not None:
        pairs = [(a, b) for a, b in pairs if id(b) in only]
    biases = {}  # bias-free target convolution -> the source's bias, waiting for its batch norm
    convs = [(a, b) for a, b in pairs if not isinstance(a, keras.layers.BatchNormalization)]
    norms = [(a, b) for a, b in pairs if isinstance(a, keras.layers.BatchNormalization)]
    for a, b in convs + norms:  # convolutions first: their biases fold into the norms after them
        if _kind(a) is not _kind(b):
            raise ValueError(f"{source.name}/{a.name} is a {_kind(a).__name__} but {target.name}/{b.name} "
                             f"a {_kind(b).__name__}: the networks differ here.")
        values = [keras.ops.convert_to_numpy(w) for w in a.weights]
        if isinstance(a, keras.layers.BatchNormalization):
            conv = b.name.removesuffix("_bn") + "_conv"  # Keras' and labkit's naming: X_conv -> X_bn
            values = _fold_into_batch_norm(a, b, values, biases.pop(conv, None))
        elif getattr(a, "use_bias", False) and not b.use_bias:  # Keras' ResNet convolutions: the bias moves into BN
            values, biases[b.name] = values[:1], values[1]
        expected = [tuple(w.shape) for w in b.weights]
        if [v.shape for v in values] != expected:
            raise ValueError(f"{source.name}/{a.name} has weights of shapes {[v.shape for v in values]}, "
                             f"{target.name}/{b.name} {expected}: the networks differ here.")
        b.set_weights(values)
    if biases:
        raise ValueError(f"{target.name}: the biases of {sorted(biases)} have no batch norm (X_conv -> X_bn) "
                         "to fold into.")
    order = {id(layer): i for i, layer in enumerate(weighted_layers(target))}
    return [(a.name, b.name) for a, b in sorted(pairs, key=lambda p: order[id(p[1])])]


def _fold_into_batch_norm(a, b, values, bias):
    if not (a.center and a.scale and b.center and b.scale):
        raise ValueError(f"{a.name} and {b.name}: port_weights copies batch norm with both scale and offset.")
    gamma, beta, mean, variance = values
    if bias is not None:
        mean = mean - bias
    variance = variance + (a.epsilon - b.epsilon)
    if np.any(variance + b.epsilon <= 0):
        raise ValueError(f"{b.name}: its epsilon {b.epsilon} is too large to take {a.name}'s statistics exactly.")
    return [gamma, beta, mean, variance]

