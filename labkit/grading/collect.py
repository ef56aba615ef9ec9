"""Grading's phase 1, its last cell: collect what the notebook computed, as data.

Runs in the student's kernel, inside the sandbox, after every cell of the notebook. For each
call the plan names (``labkit.grading.plan``) it calls the student's function with the plan's
arguments, watching for labkit's own code (``labkit.models.provenance``), and keeps the result,
what the call changed in its arguments, and what it called; each value a test reads is kept as
it is. The networks of the runs handed in are built again from the student's builder, at each
run's settings. Nothing here scores: phase 2 does, in a process of its own.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from labkit.grading.wire import TAG, Numbering, Wire, key


@functools.lru_cache(maxsize=2)
def _forbidden(network: bool) -> dict:
    """Code digests a call may not enter: labkit's reference networks and blocks, and for an
    answer by hand (not a network) also what labkit computes by hand (``exercises.by_hand_references``)."""
    from labkit.exercises import by_hand_references
    from labkit.models.provenance import digests, reference_digests

    return reference_digests() if network else {**reference_digests(), **digests(by_hand_references())}


def _built(fn, args, kwargs, network: bool):
    """A network answer built without drawing its weights (only its architecture is kept), or,
    where the answer needs its weights' values to build, as it is."""
    import keras

    from labkit.models.provenance import _traced

    try:
        with keras.StatelessScope(initialize_variables=False):
            return _traced(_forbidden(network), fn, args, kwargs)
    except Exception:  # it reads or sets weights while it builds: build it with them
        return _traced(_forbidden(network), fn, args, kwargs)


def _call(wire: Wire, fn, args: list, kwargs: dict, network: bool) -> dict:
    import keras

    from labkit.models.provenance import _traced, float32_policy

    before = {i: a.copy() for i, a in enumerate(args) if isinstance(a, np.ndarray)}
    inputs = [a for a in args if isinstance(a, keras.KerasTensor)]
    outcome: dict = {}
    try:
        with float32_policy():
            result, called = _built(fn, args, kwargs, network) if network else \
                _traced(_forbidden(network), fn, args, kwargs)
            outcome["result"] = wire.encode(result, inputs=inputs)
    except Exception as err:  # a wrong answer may raise: the tests decide what that is worth
        called = []
        outcome["result"] = wire.encode(err)
    outcome["called"] = called
    after = {}
    for i, arg in enumerate(args):
        if i in before and not np.array_equal(before[i], arg):
            after[str(i)] = wire.encode(np.array(arg))
        elif isinstance(arg, np.random.Generator):
            after[str(i)] = {TAG: "state", "state": arg.bit_generator.state}
        elif isinstance(arg, keras.Model):
            after[str(i)] = {TAG: "trainable", "flags": [layer.trainable for layer in arg.layers]}
    outcome["after"] = after
    return outcome


def _run_builds(namespace: dict, outputs: Path, wire: Wire) -> list[dict]:
    """The student's network at each handed-in run's settings, as ``train`` built it."""
    from labkit.data import NUM_CLASSES

    builds = []
    for record_path in sorted(outputs.glob("*/results.json")) if outputs.is_dir() else []:
        try:
            record = json.loads(record_path.read_text())
            network, config = record.get("network") or {}, record["config"]
            name = network.get("builder")
            if network.get("source") != "own" or not callable(namespace.get(name)):
                continue
            size = int(record["image_size"])
            classes = config.get("classes")
            kwargs = {"num_classes": len(classes) if classes else NUM_CLASSES, "input_shape": (size, size, 3),
                      **(config.get("model_options") or {})}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        entry = {"name": name, "key": key([[], kwargs], Numbering()), "run": record_path.parent.name}
        entry.update(_call(wire, namespace[name], [], kwargs, network=True))
        builds.append(entry)
    return builds


def collect(namespace: dict, plan_dir, out_dir, outputs="outputs") -> None:
    """Collect every value and call of the plan from ``namespace`` (the notebook's globals) into
    ``out_dir``."""
    plan = Wire(plan_dir)
    payload = plan.load()
    wire = Wire(out_dir)
    values, calls = {}, []
    for name, spec in payload["names"].items():
        if spec["kind"] == "value":
            values[name] = wire.encode(namespace[name]) if name in namespace else {TAG: "missing"}
    objects, case = {}, None
    for call in payload["calls"]:
        if call["case"] != case:
            objects, case = {}, call["case"]
        fn = namespace.get(call["name"])
        if not callable(fn):
            calls.append({"result": {TAG: "missing"}, "called": [], "after": {}})
            continue
        args, kwargs = plan.decode(call["args"], objects), plan.decode(call["kwargs"], objects)
        calls.append(_call(wire, fn, args, kwargs, payload["names"][call["name"]].get("network", False)))
    wire.save({"values": values, "calls": calls, "builds": _run_builds(namespace, Path(outputs), wire)})
