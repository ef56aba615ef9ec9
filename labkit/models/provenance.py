"""Whose network is it? Which of labkit's reference builders a function calls, and a fingerprint
of an architecture that does not depend on layer names.

    net, called = reference_calls(my_alexnet, input_shape=(227, 227, 3), num_classes=1000)
    called      # [] for a network built from Keras layers; ['labkit.models.alexnet.alexnet'] if not

A student's builder may use Keras layers and labkit's layers (``labkit.models.layers``, e.g.
``LocalResponseNormalization``); a call into any other module of ``labkit.models`` (a builder, a
block such as ``resnet.residual_block``, ``models.build``; not the counting helpers such as
``models.count_trainable``) means the network is labkit's, not the
student's. The calls are seen however the function was imported, renamed, copied or compiled: a
profiling hook (``sys.setprofile``, and ``threading.setprofile`` for threads) records every Python
function entered while ``fn`` runs, and labkit's functions are recognised by the digest of their
code (``code_digest``), not by their file. Switching the hook off or starting a thread during the
call is reported as a call too. The grader checks the answer cells' source as well
(``labkit.grading.statics``): a Python process cannot fully watch itself.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import threading
from pathlib import Path

import keras

_THREAD_START = threading.Thread.start.__code__

_PACKAGE = Path(__file__).resolve().parent
# building blocks that are layers, not networks: a student may use them
ALLOWED_MODULES = frozenset({"layers", "provenance"})
# of labkit.models itself, only build() makes a network; its counting and lookup helpers are fine
PACKAGE_BUILDERS = frozenset({"build"})
#: below this much bytecode a function is too generic to tell whose it is (``return x``)
_SMALLEST = 16
#: functions that switch the hook off or run code where it cannot see: seen during a call, the
#: call is not the student's own
_EVASIONS = {"setprofile": "sys.setprofile", "settrace": "sys.settrace",
             "start_new_thread": "_thread.start_new_thread", "start_joinable_thread": "_thread.start_joinable_thread"}


def code_digest(code) -> str:
    """A function's code by content, not by file name or line: its bytecode, constants (nested
    functions by their own digest), names and variables. labkit's code compiled under another file
    name, or copied into a notebook, has the same digest."""
    parts = [code.co_code, repr(code.co_names).encode(), repr(code.co_varnames).encode()]
    for const in code.co_consts:
        parts.append(code_digest(const).encode() if hasattr(const, "co_code") else repr(const).encode())
    return hashlib.sha256(b"\0".join(parts)).hexdigest()


def _codes(obj, seen: set):
    """Every code object of a function, class or module's own functions (nested ones too)."""
    import inspect as pyinspect

    if id(obj) in seen:
        return
    seen.add(id(obj))
    if pyinspect.isfunction(obj) or pyinspect.ismethod(obj):
        stack = [obj.__code__]
        while stack:
            code = stack.pop()
            yield code
            stack.extend(c for c in code.co_consts if hasattr(c, "co_code"))
    elif pyinspect.isclass(obj):
        for value in vars(obj).values():
            yield from _codes(getattr(value, "__func__", value), seen)


def digests(functions) -> dict[str, str]:
    """``{code digest: "module.name"}`` of ``functions`` (functions, classes) and their nested code."""
    found = {}
    for fn in functions:
        name = f"{fn.__module__}.{fn.__qualname__}"
        for code in _codes(fn, set()):
            if len(code.co_code) >= _SMALLEST:
                found.setdefault(code_digest(code), name if code is getattr(fn, "__code__", None)
                                 else f"{name} ({code.co_name})")
    return found


def reference_functions() -> list:
    """labkit's reference networks and blocks: every function and class of ``labkit.models``'
    modules but its layers (``ALLOWED_MODULES``), and ``build`` of the package itself."""
    import importlib
    import inspect as pyinspect
    import pkgutil

    import labkit.models as package

    found = [getattr(package, name) for name in PACKAGE_BUILDERS]
    for info in pkgutil.iter_modules([str(_PACKAGE)]):
        if info.name in ALLOWED_MODULES:
            continue
        module = importlib.import_module(f"labkit.models.{info.name}")
        found += [obj for obj in vars(module).values()
                  if (pyinspect.isfunction(obj) or pyinspect.isclass(obj)) and obj.__module__ == module.__name__]
    return found


_REFERENCE_DIGESTS: dict[str, str] | None = None


def reference_digests() -> dict[str, str]:
    global _REFERENCE_DIGESTS
    if _REFERENCE_DIGESTS is None:
        _REFERENCE_DIGESTS = digests(reference_functions())
    return _REFERENCE_DIGESTS


def _traced(known: dict, fn, args, kwargs) -> tuple[object, list[str]]:
    """Run ``fn(*args, **kwargs)`` under a profiling hook, in this thread and in any thread it
    starts; return its result and, in call order without repeats, the names (``known``: code
    digest -> name) of the functions it entered, plus what it did to escape the hook: switching
    the hook, starting a thread."""
    called: list[str] = []
    cache: dict[int, str | None] = {}

    def note(name):
        if name not in called:
            called.append(name)

    stopping = []

    def hook(frame, event, arg):
        if stopping:
            return
        if event == "call":
            code = frame.f_code
            if id(code) not in cache:
                cache[id(code)] = known.get(code_digest(code)) if len(code.co_code) >= _SMALLEST else None
            if cache[id(code)] is not None:
                note(cache[id(code)])
            elif code is _THREAD_START:
                note("threading.Thread.start (a thread runs code the check cannot follow)")
        elif event == "c_call" and getattr(arg, "__name__", None) in _EVASIONS and \
                getattr(arg, "__module__", None) in ("sys", "_thread", "threading", None):
            note(f"{_EVASIONS[arg.__name__]} (it switches the check off)")

    previous = sys.getprofile()
    threading.setprofile(hook)
    sys.setprofile(hook)
    try:
        result = fn(*args, **kwargs)
    finally:
        if sys.getprofile() is not hook:
            note("sys.setprofile (the profiling hook was replaced)")
        stopping.append(True)
        sys.setprofile(previous)
        threading.setprofile(None)
    return result, called


def reference_calls(fn, *args, **kwargs) -> tuple[object, list[str]]:
    """Run ``fn(*args, **kwargs)``; return its result and the labkit reference functions it
    called, directly or through others, recognised by their code, wherever it was loaded from
    (``labkit.models.<module>.<function>``, in call order, without repeats), and any attempt to
    switch the check off. Exceptions from ``fn`` propagate."""
    return _traced(reference_digests(), fn, args, kwargs)


def calls_to(functions, fn, *args, **kwargs) -> tuple[object, list[str]]:
    """Run ``fn(*args, **kwargs)``; return its result and which of ``functions`` it entered,
    directly or through others (``module.name``, in call order, without repeats): the same hook
    as ``reference_calls``, for references outside ``labkit.models`` (labkit's augmentations by hand)."""
    return _traced(digests(functions), fn, args, kwargs)


def _layer_names(model) -> list[str]:
    names, stack = [model.name], list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop(0)
        names.append(layer.name)
        stack.extend(getattr(layer, "layers", []))
    # a Sequential model's input layer is in its config but not in its layers; appended last, so
    # that a functional model's names (which list it already) number as before
    for tensor in getattr(model, "inputs", None) or []:
        history = getattr(tensor, "_keras_history", None)
        if history is not None:
            names.append(history[0].name)
    return names


def fingerprint(model) -> str:
    """Eight hex digits that identify ``model``'s architecture: its layers, their settings and
    how they connect, but not their names (Keras numbers unnamed layers ``conv2d_7``, ``conv2d_8``
    ... differently each time a cell runs). Equal architectures give equal fingerprints."""
    text = json.dumps(model.get_config(), sort_keys=True, default=str)
    # the same network trained in mixed precision (the gpu profile) and rebuilt in float32
    for policy in ("mixed_float16", "mixed_bfloat16"):
        text = text.replace(json.dumps(policy), json.dumps("float32"))
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


def functional(net):
    """``net`` as a functional model: a ``Sequential`` is rewired onto its own layers."""
    if isinstance(net, keras.Sequential) and net.inputs:
        one = lambda tensors: tensors[0] if len(tensors) == 1 else tensors  # noqa: E731
        return keras.Model(one(net.inputs), one(net.outputs), name=net.name)
    return net
