"""The network a run trains: labkit's reference builder, or one the user wrote.

    train("alexnet", builder=my_alexnet)

``my_alexnet(num_classes=..., input_shape=..., **model_options)`` returns a ``keras.Model``, as
labkit's builders do. ``choose_network`` builds it once to check it. A builder that is not
finished (it raises, returns nothing, or returns a network of the wrong shape) or that only calls
labkit's reference (``labkit.models.provenance``) is not trained: the run trains labkit's
reference network instead, says so, and records it (``results.json``: ``network``).
"""
from __future__ import annotations

import dataclasses

import keras

from labkit import models as lkmodels
from labkit.models.provenance import fingerprint, float32_policy, reference_calls
from labkit.train.config import TrainConfig

OWN, REFERENCE = "own", "labkit"


@dataclasses.dataclass
class Network:
    """Which network a run trains. ``source`` is ``"own"`` (the user's builder) or ``"labkit"``;
    ``note`` says why labkit's reference is trained in place of a builder that was given."""

    model: str
    source: str = REFERENCE
    builder: object = None
    builder_name: str | None = None
    fingerprint: str | None = None
    outputs: int = 1
    note: str | None = None

    @property
    def tag(self) -> str | None:
        """What ``TrainConfig.network`` records: ``own-<fingerprint>``, or None for labkit's network."""
        return f"{OWN}-{self.fingerprint}" if self.source == OWN else None

    def build(self, cfg: TrainConfig, weights: str | None = None) -> keras.Model:
        shape = (cfg.image_size, cfg.image_size, 3)
        if self.source == OWN:
            return self.builder(num_classes=cfg.num_classes, input_shape=shape, **cfg.model_options)
        return lkmodels.build(cfg.model, num_classes=cfg.num_classes, input_shape=shape, weights=weights,
                              **cfg.model_options)

    def record(self) -> dict:
        return {"source": self.source, "builder": self.builder_name, "fingerprint": self.fingerprint,
                "note": self.note}


def _problem(net, shape: tuple, num_classes: int) -> str | None:
    """What keeps ``net`` from being trained at ``shape`` with ``num_classes`` classes, or None."""
    if net is None:
        return "it returns nothing yet (None)"
    if not isinstance(net, keras.Model):
        return f"it returns a {type(net).__name__}, not a keras.Model"
    if len(net.inputs) != 1 or tuple(net.inputs[0].shape[1:]) != shape:
        found = [tuple(t.shape[1:]) for t in net.inputs]
        return f"its input is {found[0] if len(found) == 1 else found}, expected {shape}: use input_shape"
    for tensor in net.outputs:
        if tuple(tensor.shape[1:]) != (num_classes,):
            return (f"an output has shape {tuple(tensor.shape[1:])}, expected ({num_classes},): end with a "
                    "Dense(num_classes, activation='softmax') layer")
    return None


def choose_network(cfg: TrainConfig, builder=None, log=print) -> Network:
    """The network ``cfg`` trains: labkit's reference for ``cfg.model``, or ``builder``'s if it
    builds a network of its own with the right input and outputs."""
    if builder is None:
        probe = 3 if cfg.model == "googlenet" and cfg.model_options.get("aux_classifiers") else 1
        return Network(cfg.model, outputs=probe)
    if not callable(builder):
        raise TypeError(f"builder must be a function that returns a keras.Model, got {type(builder).__name__}.")
    name = getattr(builder, "__name__", type(builder).__name__)
    shape = (cfg.image_size, cfg.image_size, 3)
    problem, called, net = None, [], None
    try:
        with float32_policy():
            net, called = reference_calls(builder, num_classes=cfg.num_classes, input_shape=shape,
                                          **cfg.model_options)
    except Exception as err:  # a student's unfinished or broken builder: train the reference instead
        problem = f"it raised {type(err).__name__}: {err}"
    if problem is None:
        problem = _problem(net, shape, cfg.num_classes)
    if problem is None and called:
        problem = f"it calls labkit's reference network ({', '.join(called[:3])}), so it is not your own"
    if problem is not None:
        reference = choose_network(cfg)
        reference.builder_name, reference.note = name, f"{name}: {problem}"
        log(f"[labkit.train] NOT YOUR NETWORK: {name} cannot be trained yet ({problem}). Training labkit's "
            f"reference {cfg.model} instead; the run record says so. Finish {name} and run this cell again "
            "to train your own.")
        return reference
    return Network(cfg.model, OWN, builder, name, fingerprint(net), outputs=len(net.outputs))
