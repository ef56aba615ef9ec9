"""Values between the grading phases, as data only: JSON, ``.npz`` without pickles, ``.keras`` files.

Phase 1 (the sandbox) writes what a notebook computed; phase 2 reads it in a process where no
submission code has run. Nothing here unpickles or imports what a file names: arrays are read
with ``allow_pickle=False`` and networks with Keras' ``safe_mode`` after their config has been
checked to name only Keras' and labkit's layers.

    box = Wire(folder)
    box.encode(value)   # JSON-able, with arrays and networks put beside it
    box.save()          # folder/wire.json, folder/arrays.npz, folder/<ref>.keras
    Wire(folder).load().decode(encoded)

Tagged values (``{"~": kind, ...}``): tuple, dict, array, model, input (a ``keras.Input``'s
shape), rng (a NumPy generator, by its number within a test and its starting state), run (a
training run, by its folder's name), raised (an exception: its class and message), unsupported.
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

TAG = "~"
#: more than the labs' answers could ever hold: a larger collection is refused, not loaded
MAX_ARRAYS = 512 * 2**20
#: layer modules a collected network may name (anything else would need code to load)
_SAFE_MODULES = ("keras", "labkit.models.layers")


class WireError(ValueError):
    """A collected file is not what grading wrote: its question scores zero with this reason."""


def _model_classes(config, found: set) -> set:
    if isinstance(config, dict):
        if "class_name" in config and "module" in config:
            found.add((str(config.get("module")), str(config["class_name"]), str(config.get("registered_name"))))
        for value in config.values():
            _model_classes(value, found)
    elif isinstance(config, list):
        for value in config:
            _model_classes(value, found)
    return found


def _config(path: Path) -> dict:
    """A network file's config: ``.keras`` (weights too) or ``.json`` (the architecture only)."""
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise WireError(f"{path.name} is not a Keras network file ({type(err).__name__})") from None


def check_keras_file(path: Path) -> dict:
    """Refuse a network file whose config names a module outside Keras and labkit's layers
    (``WireError``), before Keras reads it; return the config."""
    config = _config(path)
    for module, name, _ in _model_classes(config, set()):
        if name in ("Lambda", "TFSMLayer") or (module in ("None", "builtins") and name in ("function", "__lambda__")):
            raise WireError(f"the network holds a Python function ({name}); build it from keras.layers")
        if module != "None" and not module.startswith(_SAFE_MODULES):
            raise WireError(f"the network holds {module}.{name}, which grading cannot load without running "
                            "your code: build it from keras.layers and labkit.models.layers")
    return config


def load_network(path: Path):
    """A collected network, checked (``check_keras_file``) and loaded in Keras' safe mode; a
    ``Sequential`` comes back as the same functional model (it has ``.output``). A ``.json``
    file holds the architecture only: its weights are drawn anew, as the tests set their own."""
    import keras

    import labkit.models  # noqa: F401  (registers labkit's layers)
    from labkit.models.provenance import functional

    config = check_keras_file(path)
    try:
        if path.suffix == ".json":
            net = keras.saving.deserialize_keras_object(config, safe_mode=True)
        else:
            net = keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as err:  # Keras raises several kinds for a foreign or damaged file
        raise WireError(f"the network cannot be loaded ({type(err).__name__}: {str(err)[:200]})") from None
    return functional(net)


def array_digest(array) -> str:
    array = np.ascontiguousarray(array)
    return hashlib.sha256(f"{array.dtype.str}{array.shape}".encode() + array.tobytes()).hexdigest()[:16]


class Numbering:
    """Objects numbered in the order a test first passes them: generators and networks passed
    to several calls are one object in every phase. Numbered objects are kept alive, so that a
    new object never takes a freed one's ``id``."""

    def __init__(self):
        self._numbers: dict[int, int] = {}
        self._alive: list = []

    def seen(self, obj) -> bool:
        return id(obj) in self._numbers

    def of(self, obj) -> int:
        if id(obj) not in self._numbers:
            self._numbers[id(obj)] = len(self._alive)
            self._alive.append(obj)
        return self._numbers[id(obj)]


class Wire:
    """One folder of encoded values. ``encode`` and ``decode`` are inverses for what the labs pass."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.arrays: dict[str, np.ndarray] = {}
        self.models: set[str] = set()
        self.numbers = Numbering()   # generators and networks by their number within one test

    def number(self, obj) -> int:
        return self.numbers.of(obj)

    # ------------------------------------------------------------------ writing
    def _ref(self, prefix: str) -> str:
        return f"{prefix}{len(self.arrays) + len(self.models)}"

    def encode(self, value, inputs=None, weights: bool = False):
        """JSON-able ``value``. ``inputs``: the ``keras.Input`` tensors a call was given, so that a
        symbolic result is kept as the network from them to it. ``weights``: keep networks'
        weights (arguments a test built), not only their architecture (results: the tests that
        compare functions copy the reference's weights in)."""
        import keras

        from labkit.train.records import Run

        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, np.random.Generator):
            return {TAG: "rng", "id": self.number(value), "state": value.bit_generator.state}
        if isinstance(value, (np.ndarray, np.generic)):
            ref = self._ref("a")
            self.arrays[ref] = np.asarray(value)
            return {TAG: "array", "ref": ref, "scalar": isinstance(value, np.generic)}
        if isinstance(value, tuple):
            return {TAG: "tuple", "v": [self.encode(v, inputs, weights) for v in value]}
        if isinstance(value, list):
            return [self.encode(v, inputs, weights) for v in value]
        if isinstance(value, dict):
            return {TAG: "dict", "items": [[self.encode(k), self.encode(v, inputs, weights)] for k, v in value.items()]}
        if isinstance(value, keras.Model):
            if self.numbers.seen(value):   # passed before in this test: the same object
                return {TAG: "model", "id": self.numbers.of(value)}
            number = self.number(value)
            return {**self._model(value, weights), "id": number}
        if isinstance(value, keras.KerasTensor):
            if not inputs:
                return {TAG: "input", "shape": list(value.shape[1:]), "dtype": str(value.dtype)}
            return self._model(keras.Model(inputs, value), weights)
        if isinstance(value, Run):
            return {TAG: "run", "name": Path(value.out_dir).name}
        if isinstance(value, BaseException):
            return {TAG: "raised", "type": type(value).__name__, "message": str(value)[:500]}
        return {TAG: "unsupported", "type": type(value).__name__}

    def _model(self, net, weights: bool) -> dict:
        ref = self._ref("m")
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            if weights:
                net.save(self.folder / f"{ref}.keras")
            else:
                import keras

                (self.folder / f"{ref}.json").write_text(json.dumps(keras.saving.serialize_keras_object(net)))
        except Exception as err:  # a layer Keras cannot serialise (a Lambda with a closure, ...)
            return {TAG: "unsupported", "type": f"network that Keras cannot save ({type(err).__name__}: {str(err)[:200]})"}
        self.models.add(ref)
        return {TAG: "model", "ref": ref}

    def save(self, payload) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        np.savez(self.folder / "arrays.npz", **self.arrays)
        (self.folder / "wire.json").write_text(json.dumps(payload))

    # ------------------------------------------------------------------ reading
    def load(self):
        """The payload ``save`` wrote (``WireError`` when missing or malformed)."""
        try:
            payload = json.loads((self.folder / "wire.json").read_text())
            with zipfile.ZipFile(self.folder / "arrays.npz") as archive:
                if sum(info.file_size for info in archive.infolist()) > MAX_ARRAYS:
                    raise WireError(f"the collected arrays are over {MAX_ARRAYS // 2**20} MB")
            with np.load(self.folder / "arrays.npz", allow_pickle=False) as stored:
                self.arrays = {key: stored[key] for key in stored.files}
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise WireError(f"nothing readable was collected ({type(err).__name__})") from None
        return payload

    def decode(self, value, objects=None, inputs=None):
        """The value ``encode`` gave. ``objects``: ``{number: generator or network}`` shared by the
        calls of one test. ``inputs``: the symbolic tensors to apply a collected block to."""
        if isinstance(value, list):
            return [self.decode(v, objects, inputs) for v in value]
        if not isinstance(value, dict):
            return value
        kind = value.get(TAG)
        if kind == "tuple":
            return tuple(self.decode(v, objects, inputs) for v in value["v"])
        if kind == "dict":
            return {_hashable(self.decode(k)): self.decode(v, objects, inputs) for k, v in value["items"]}
        if kind == "array":
            if value["ref"] not in self.arrays:
                raise WireError(f"array {value['ref']} is missing")
            array = self.arrays[value["ref"]]
            return array[()] if value.get("scalar") else array.copy()
        if kind == "model":
            if objects is not None and value.get("id") in objects:
                return objects[value["id"]]
            files = self._refs()
            if not isinstance(value.get("ref"), str) or value["ref"] not in files:
                raise WireError("a collected network is missing")
            net = load_network(files[value["ref"]])
            if inputs:
                # its layers applied to the inputs one by one, not as one nested layer, so that a
                # model built from them lists the layers as the student's block does
                return net.call(inputs[0] if len(inputs) == 1 else list(inputs))
            if objects is not None and "id" in value:
                objects[value["id"]] = net
            return net
        if kind == "input":
            import keras

            return keras.Input(tuple(value["shape"]), dtype=value.get("dtype", "float32"))
        if kind == "rng":
            number = value.get("id")
            if objects is not None and number in objects:
                return objects[number]
            rng = np.random.default_rng()
            rng.bit_generator.state = value["state"]
            if objects is not None:
                objects[number] = rng
            return rng
        raise WireError(f"a collected value of kind {kind!r} cannot be read back")

    def _refs(self) -> dict:
        return {p.stem: p for p in sorted(self.folder.glob("m*.keras")) + sorted(self.folder.glob("m*.json"))}


def key(value, numbers: Numbering) -> str:
    """A call's arguments as one string, equal in the plan and in phase 2 for the same call:
    arrays by content, networks by architecture and generators by their number in the test."""
    import keras

    from labkit.models.provenance import fingerprint

    def canon(v):
        if v is None or isinstance(v, (bool, int, float, str)):
            return [type(v).__name__, v]
        if isinstance(v, (np.ndarray, np.generic)):
            return ["array", array_digest(v)]
        if isinstance(v, (tuple, list)):
            return [type(v).__name__, [canon(x) for x in v]]
        if isinstance(v, dict):
            return ["dict", sorted([json.dumps(canon(k)), canon(x)] for k, x in v.items())]
        if isinstance(v, np.random.Generator):
            return ["rng", numbers.of(v)]
        if isinstance(v, keras.Model):
            return ["model", fingerprint(v), numbers.of(v)]
        if isinstance(v, keras.KerasTensor):
            return ["input", list(v.shape[1:])]
        return ["object", type(v).__name__]

    return json.dumps(canon(value), sort_keys=True, default=str)


def _hashable(key):
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key

