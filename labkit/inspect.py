"""Look inside a network the way the course slides tabulate it: output size, parameters,
operations and memory per layer, and the arithmetic behind them.

Conventions, as in the slides:
* ``params``: trainable weights and biases (batch norm's moving statistics are counted apart,
  in ``non_trainable``).
* ``ops``: operations, as deck 003's AlexNet (CaffeNet), VGG-16 and LeNet-5 tables count them.
  A layer with weights does its multiply-accumulates, bias additions included: a convolution
  ``params x output positions`` (AlexNet conv1: 34,944 x 55 x 55 = 105,705,600), a fully
  connected layer ``params`` (fc6: 37,752,832). A pooling layer does one operation per *input*
  value (pool1: 55 x 55 x 96 = 290,400), a normalisation (LRN, batch norm) and a softmax one per
  output value (norm1: 27 x 27 x 96 = 69,984; softmax: 1,000). ReLU, dropout, flatten and padding
  count 0. LeNet's trainable subsampling counts ``outputs x (window + 1)``, LeCun's "connections".
* ``macs``: the kernel's multiply-accumulates alone, without biases or any other layer: what
  the papers report as "FLOPs" (ResNet-50: 3.86 G; Table 1 of He et al. prints 3.8).
* ``activations``: values a layer stores per image; ``memory_bytes`` = activations x bytes per
  value (4 for float32). Each tensor is counted once: layers that apply an element-wise function
  to, or reshape, their input (ReLU, Activation, Dropout, Flatten) are taken as in place and
  store 0, as the slides count VGG's memory (conv, pool and fc outputs).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

BYTES_PER_VALUE = 4  # float32

# Extra copies of the parameters an optimiser keeps (plus one for the gradients)
OPTIMIZER_STATE_COPIES = {"sgd": 0, "momentum": 1, "sgd-momentum": 1, "rmsprop": 1, "adam": 2, "adamw": 2}


def conv_output_size(W: int, F: int, P: int = 0, S: int = 1) -> int:
    """Output side of a convolution or pooling: (W - F + 2P) / S + 1.

    Raises ``ValueError`` when the filter does not tile the padded input exactly (the slides'
    W=10, F=3, P=0, S=2 gives 4.5) or does not fit at all.
    """
    for name, value, least in (("W", W, 1), ("F", F, 1), ("S", S, 1), ("P", P, 0)):
        if not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    span = W - F + 2 * P
    if span < 0:
        raise ValueError(f"The {F}x{F} filter does not fit in the padded input: W + 2P = {W + 2 * P} < F = {F}.")
    if span % S:
        raise ValueError(
            f"(W - F + 2P) / S + 1 = ({W} - {F} + 2*{P}) / {S} + 1 = {span / S + 1:g} is not an integer: "
            f"with stride {S} the {F}x{F} filter does not tile the {W + 2 * P}-wide padded input "
            f"(the last position would hang over the edge). Change the padding or the stride.")
    return span // S + 1


pool_output_size = conv_output_size  # pooling follows the same arithmetic (usually P = 0)


def receptive_field(layers: list[tuple[int, int]]) -> int:
    """Receptive field of a stack of ``(kernel, stride)`` layers, on the input: r += (k-1) * jump."""
    r, jump = 1, 1
    for k, s in layers:
        r += (k - 1) * jump
        jump *= s
    return r


def stacked_vs_single(n_layers: int = 3, kernel: int = 3, channels: str | int = "C") -> pd.DataFrame:
    """A stack of ``n_layers`` ``kernel x kernel`` convolutions against the one big convolution
    with the same receptive field (VGG, section 2.3: three 3x3 = one 7x7, 27C^2 vs 49C^2).

    ``channels`` is a number (weights counted for it) or a symbol kept in the formula.
    Biases are left out, as in the paper.
    """
    rf = receptive_field([(kernel, 1)] * n_layers)
    stack_w, single_w = n_layers * kernel * kernel, rf * rf
    rows = [
        {"design": f"{n_layers} x conv {kernel}x{kernel}", "receptive_field": f"{rf}x{rf}",
         "weights_per_C2": stack_w, "nonlinearities": n_layers},
        {"design": f"1 x conv {rf}x{rf}", "receptive_field": f"{rf}x{rf}",
         "weights_per_C2": single_w, "nonlinearities": 1},
    ]
    df = pd.DataFrame(rows)
    if isinstance(channels, (int, np.integer)):
        df["weights"] = df["weights_per_C2"] * int(channels) ** 2
    else:
        df["weights"] = [f"{w}{channels}²" for w in df["weights_per_C2"]]
    return df


IN_PLACE_LAYERS = ("ReLU", "Activation", "Dropout", "Flatten", "Reshape", "LeakyReLU")


def _shape_of(tensor) -> tuple:
    return tuple(int(d) for d in tensor.shape[1:])


POOLING = ("MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D")
NORMALISATION = ("LocalResponseNormalization", "BatchNormalization")


def _is_softmax(layer) -> bool:
    return type(layer).__name__ == "Softmax" or getattr(getattr(layer, "activation", None), "__name__", "") == "softmax"


def _layer_ops(layer, out_shape: tuple, params: int) -> int:
    import keras

    from labkit.models.layers import PartialConv2D, Subsampling

    positions = math.prod(out_shape[:-1]) if len(out_shape) > 1 else 1
    kind = type(layer).__name__
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, PartialConv2D, keras.layers.Dense)):
        # a Dense(..., activation="softmax") also does the softmax
        return positions * params + (math.prod(out_shape) if _is_softmax(layer) else 0)
    if isinstance(layer, Subsampling):
        return math.prod(out_shape) * (layer.pool_size ** 2 + 1)
    if kind in POOLING:
        return math.prod(_shape_of(layer.input))
    if kind in NORMALISATION or _is_softmax(layer):
        return math.prod(out_shape)
    return 0


def _layer_macs(layer, out_shape: tuple) -> int:
    """Multiply-accumulates of the kernel alone (no bias, no other layer): what papers report
    as a network's "FLOPs" (ResNet's Table 1)."""
    kernel = getattr(layer, "kernel", None)
    if kernel is None or not hasattr(kernel, "shape"):
        return 0
    positions = math.prod(out_shape[:-1]) if len(out_shape) > 1 else 1
    return positions * math.prod(kernel.shape)  # a depthwise kernel (k, k, C, m) too: k*k MACs per output


def layer_table(model, bytes_per_value: int = BYTES_PER_VALUE, totals: bool = True) -> pd.DataFrame:
    """One row per layer: ``layer, type, output_shape, activations, memory_bytes, params,
    non_trainable, ops, macs``; with ``totals``, a last row ``TOTAL``. Per image (batch of 1)."""
    rows = []
    for layer in model.layers:
        outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
        shapes = [_shape_of(t) for t in outputs]
        in_place = type(layer).__name__ in IN_PLACE_LAYERS
        activations = 0 if in_place else sum(math.prod(s) for s in shapes)
        params = int(sum(math.prod(w.shape) for w in layer.trainable_weights))
        frozen = int(sum(math.prod(w.shape) for w in layer.non_trainable_weights))
        rows.append({
            "layer": layer.name,
            "type": type(layer).__name__,
            "output_shape": shapes[0] if len(shapes) == 1 else shapes,
            "activations": activations,
            "memory_bytes": activations * bytes_per_value,
            "params": params,
            "non_trainable": frozen,
            "ops": _layer_ops(layer, shapes[0], params + 0),
            "macs": _layer_macs(layer, shapes[0]),
        })
    df = pd.DataFrame(rows)
    if totals:
        total = {c: int(df[c].sum()) for c in ("activations", "memory_bytes", "params", "non_trainable", "ops", "macs")}
        df = pd.concat([df, pd.DataFrame([{"layer": "TOTAL", "type": "", "output_shape": "", **total}])],
                       ignore_index=True)
    return df


def slide_table(model) -> pd.DataFrame:
    """The model as deck 003 tabulates AlexNet, VGG-16 and LeNet-5: one row per layer that the
    slides list (the input, and every layer with parameters or operations: convolutions, pools,
    normalisations, fully connected layers, softmax; not ReLU, dropout, flatten or padding), with
    ``parameters``, ``operations`` and ``volume`` (the output, ``55x55x96`` or ``4,096``)."""
    table = layer_table(model, totals=False)
    rows = table[(table["type"] == "InputLayer") | (table["params"] > 0) | (table["ops"] > 0)]

    def volume(shape):
        return f"{shape[0]:,}" if len(shape) == 1 else "x".join(str(d) for d in shape)

    return pd.DataFrame({"layer": rows["layer"].values, "parameters": rows["params"].values,
                         "operations": rows["ops"].values, "volume": [volume(s) for s in rows["output_shape"]]})


def memory_estimate(model, batch_size: int = 1, optimizer: str = "sgd-momentum",
                    bytes_per_value: int = BYTES_PER_VALUE, training: bool = True) -> dict:
    """The slides' memory budget in bytes: activations (x2 when training: the backward pass keeps
    a gradient for each), parameters, their gradients, and the optimiser's extra copies
    (momentum 1, Adam 2). Excludes framework overhead and workspace."""
    key = optimizer.lower()
    if key not in OPTIMIZER_STATE_COPIES:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZER_STATE_COPIES)}, got {optimizer!r}")
    table = layer_table(model, bytes_per_value, totals=False)
    activations = int(table["activations"].sum()) * batch_size * bytes_per_value
    params = int(table["params"].sum() + table["non_trainable"].sum()) * bytes_per_value
    trainable = int(table["params"].sum()) * bytes_per_value
    budget = {
        "activations": activations * (2 if training else 1),
        "parameters": params,
        "gradients": trainable if training else 0,
        "optimizer_state": trainable * OPTIMIZER_STATE_COPIES[key] if training else 0,
    }
    budget["total"] = sum(budget.values())
    return budget


def summarize(model) -> pd.Series:
    """Totals for comparing architectures: trainable params, all params, ops, activations/image."""
    table = layer_table(model, totals=False)
    return pd.Series({
        "params": int(table["params"].sum()),
        "params_incl_bn_stats": int(table["params"].sum() + table["non_trainable"].sum()),
        "ops": int(table["ops"].sum()),
        "macs": int(table["macs"].sum()),
        "activations": int(table["activations"].sum()),
        "activation_memory_mb": table["memory_bytes"].sum() / 2**20,
    }, name=model.name, dtype=object)  # object: counts stay exact integers


def format_table(df: pd.DataFrame) -> pd.DataFrame:
    """The table with thousands separators and memory in KiB, for display."""
    out = df.copy()
    for c in ("activations", "params", "non_trainable", "ops", "macs", "parameters", "operations"):
        if c in out:
            out[c] = out[c].map(lambda v: f"{int(v):,}")
    if "memory_bytes" in out:
        out.insert(out.columns.get_loc("memory_bytes"), "memory_kib", (df["memory_bytes"] / 1024).round(1))
        out = out.drop(columns="memory_bytes")
    return out


def _weight_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _weight_layers(layer)
        elif type(layer).__name__ in ("Conv2D", "Dense", "DepthwiseConv2D"):
            yield layer


def gradient_norms(model, images, labels) -> pd.DataFrame:
    """How strongly the loss pulls on each layer: for every convolution and fully connected layer,
    in order (``depth`` 1 is the first), the L2 norm of the gradient of the cross-entropy on one
    batch (``images``, integer ``labels``) with respect to its kernel, and the kernel's own norm.
    Vanishing gradients show as norms that shrink towards the input. Any backend."""
    import keras

    from labkit import backend

    grads = backend.loss_gradients(model, keras.losses.SparseCategoricalCrossentropy(), images, np.asarray(labels))
    by_path = {v.path: g for v, g in zip(model.trainable_variables, grads)}
    rows = []
    for depth, layer in enumerate(_weight_layers(model), start=1):
        kernel = layer.kernel
        rows.append({"depth": depth, "layer": layer.name, "gradient_norm": float(np.linalg.norm(by_path[kernel.path])),
                     "weight_norm": float(np.linalg.norm(keras.ops.convert_to_numpy(kernel)))})
    return pd.DataFrame(rows)
