"""Whose network is it? Which of labkit's reference builders a function calls, and a fingerprint
of an architecture that does not depend on layer names.

    net, called = reference_calls(my_alexnet, input_shape=(227, 227, 3), num_classes=1000)
    called      # [] for a network built from Keras layers; ['labkit.models.alexnet.alexnet'] if not

A student's builder may use Keras layers and labkit's layers (``labkit.models.layers``, e.g.
``LocalResponseNormalization``); a call into any other module of ``labkit.models`` (a builder, a
block such as ``resnet.residual_block``, ``models.build``; not the counting helpers such as
``models.count_trainable``) means the network is labkit's, not the
student's. The calls are seen however the function was imported or renamed: a profiling hook
records every Python function entered while ``fn`` runs (``sys.setprofile``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from pathlib import Path

import keras

_PACKAGE = Path(__file__).resolve().parent
# building blocks that are layers, not networks: a student may use them
ALLOWED_MODULES = frozenset({"layers", "provenance"})


# of labkit.models itself, only build() makes a network; its counting and lookup helpers are fine
PACKAGE_BUILDERS = frozenset({"build"})


def _reference_module(filename: str) -> str | None:
    path = Path(filename)
    if path.parent != _PACKAGE or path.suffix != ".py" or path.stem in ALLOWED_MODULES:
        return None
    return "labkit.models" if path.stem == "__init__" else f"labkit.models.{path.stem}"


def _traced(name_of, fn, args, kwargs) -> tuple[object, list[str]]:
    """Run ``fn(*args, **kwargs)`` under a profiling hook; return its result and, in call order
    without repeats, ``name_of(code)`` of every Python function entered that it names (not None)."""
    called: list[str] = []

    def hook(frame, event, arg):
        if event == "call" and (name := name_of(frame.f_code)) is not None and name not in called:
            called.append(name)

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        result = fn(*args, **kwargs)
    finally:
        sys.setprofile(previous)
    return result, called


def reference_calls(fn, *args, **kwargs) -> tuple[object, list[str]]:
    """Run ``fn(*args, **kwargs)``; return its result and the labkit reference functions it
    called, directly or through others (``labkit.models.<module>.<function>``, in call order,
    without repeats). Exceptions from ``fn`` propagate."""
    cache: dict[str, str | None] = {}

    def name_of(code):
        if code.co_filename not in cache:
            cache[code.co_filename] = _reference_module(code.co_filename)
        module = cache[code.co_filename]
        if module is not None and (module != "labkit.models" or code.co_name in PACKAGE_BUILDERS):
            return f"{module}.{code.co_name}"
        return None

    return _traced(name_of, fn, args, kwargs)


def calls_to(functions, fn, *args, **kwargs) -> tuple[object, list[str]]:
    """Run ``fn(*args, **kwargs)``; return its result and which of ``functions`` it entered,
    directly or through others (``module.name``, in call order, without repeats): the same hook
    as ``reference_calls``, for references outside ``labkit.models`` (labkit's augmentations by hand)."""
    codes = {f.__code__: f"{f.__module__}.{f.__qualname__}" for f in functions}
    return _traced(codes.get, fn, args, kwargs)


def _layer_names(model) -> list[str]:
    names, stack = [model.name], list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop(0)
        names.append(layer.name)
        stack.extend(getattr(layer, "layers", []))
    return names


def fingerprint(model) -> str:
    """Eight hex digits that identify ``model``'s architecture: its layers, their settings and
    how they connect, but not their names (Keras numbers unnamed layers ``conv2d_7``, ``conv2d_8``
    ... differently each time a cell runs). Equal architectures give equal fingerprints."""
    text = json.dumps(model.get_config(), sort_keys=True, default=str)
    names = _layer_names(model)
    for i, name in sorted(enumerate(names), key=lambda item: -len(item[1])):
        text = text.replace(json.dumps(name), f'"#{i}"')
    return hashlib.sha256(text.encode()).hexdigest()[:8]


@contextlib.contextmanager
def float32_policy():
    """Build under float32 whatever dtype policy an earlier run left (mixed precision changes the
    layers' configs, and so the fingerprint)."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)

