"""Grading's phases without a notebook run: plan, collect and score a namespace, as ``grade`` does.

Honest answers written in other styles score full marks; answers that call labkit's own code,
switch its check off, or hand phase 2 a network that would run code score zero and run nothing.
End to end through ``labkit grade`` (the sandbox, the CSV): ``test_grading.py``.
"""
import json
import textwrap

import pytest

from labkit import grading
from labkit.grading.collect import collect
from labkit.grading.plan import make_plan, solution_namespace
from labkit.grading.score import score
from labkit.grading.statics import check_source

pytestmark = pytest.mark.slow

LABS = ("01_cnn_building_blocks", "02_alexnet", "03_vgg", "05_resnet", "08_transfer_learning", "09_modern_cnns")


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    return grading.assign(tmp_path_factory.mktemp("assign") / "dist", log=lambda *_: None,
                          notebooks=[p for p in grading.graded_notebooks() if p.stem in LABS])


@pytest.fixture(scope="module")
def plans(dist, tmp_path_factory):
    folder = tmp_path_factory.mktemp("plans")
    return {lab: make_plan(dist / "autograder" / lab, folder / lab) and folder / lab for lab in LABS}


def _grade(dist, plans, lab, tmp_path, source: str = "", notebook=None, context=None) -> dict:
    """``{question: (score, possible, message)}`` of the solution's namespace with ``source`` run
    after it (an answer written another way); ``context``: what the lab's own cells defined."""
    autograder = dist / "autograder" / lab
    env = {**solution_namespace(autograder), **(context or {})}
    exec(compile(textwrap.dedent(source), "<answer>", "exec"), env)
    collect(env, plans[lab], tmp_path / "collected")
    outcome = score(autograder, plans[lab], tmp_path / "collected", notebook or autograder / f"{lab}.ipynb", {})
    assert not outcome.fatal, outcome.reason
    return {q: (v["score"], v["possible"], v["message"]) for q, v in outcome.questions.items()}


ALEXNET_LAYERS = """
import keras
from keras import layers
from labkit.models.layers import LocalResponseNormalization

def my_alexnet(num_classes=1000, input_shape=(227, 227, 3)):
    inputs = keras.Input(input_shape)
    x = layers.ReLU()(layers.Conv2D(96, 11, strides=4)(inputs))
    x = LocalResponseNormalization()(layers.MaxPooling2D(3, strides=2)(x))
    x = layers.Activation("relu")(layers.Conv2D(256, 5, padding="same")(x))
    x = LocalResponseNormalization()(layers.MaxPooling2D(3, strides=2)(x))
    for filters in (384, 384, 256):
        x = layers.ReLU()(layers.Conv2D(filters, 3, padding="same")(x))
    x = layers.Flatten()(layers.MaxPooling2D(3, strides=2)(x))
    for _ in range(2):
        x = layers.ReLU()(layers.Dense(4096)(layers.Dropout(0.5)(x)))
    return keras.Model(inputs, {softmax}(layers.Dense(num_classes)(x)))
"""

ALEXNET_SEQUENTIAL = """
import keras
from keras import layers
from labkit.models.layers import LocalResponseNormalization

def my_alexnet(num_classes=1000, input_shape=(227, 227, 3)):
    return keras.Sequential([
        keras.Input(input_shape),
        layers.Conv2D(96, 11, strides=4, activation="relu"), layers.MaxPooling2D(3, strides=2),
        LocalResponseNormalization(),
        layers.Conv2D(256, 5, padding="same", activation="relu"), layers.MaxPooling2D(3, strides=2),
        LocalResponseNormalization(),
        layers.Conv2D(384, 3, padding="same", activation="relu"),
        layers.Conv2D(384, 3, padding="same", activation="relu"),
        layers.Conv2D(256, 3, padding="same", activation="relu"), layers.MaxPooling2D(3, strides=2),
        layers.Flatten(),
        layers.Dropout(0.5), layers.Dense(4096, activation="relu"),
        layers.Dropout(0.5), layers.Dense(4096, activation="relu"),
        layers.Dense(num_classes), layers.Softmax()])
"""


@pytest.mark.parametrize("source", [
    ALEXNET_LAYERS.replace("{softmax}", "layers.Softmax()"),
    ALEXNET_LAYERS.replace("{softmax}", 'layers.Activation("softmax")'),
    ALEXNET_SEQUENTIAL], ids=["relu-softmax-layers", "dense-then-activation", "sequential"])
def test_alexnet_in_another_style_scores_full_marks(dist, plans, tmp_path, source):
    assert check_source([(0, source)]) == []
    graded = _grade(dist, plans, "02_alexnet", tmp_path, source)
    assert graded["alexnet"][0] == graded["alexnet"][1] == 4, graded["alexnet"]


def test_vgg_with_activation_layers_scores_full_marks(dist, plans, tmp_path):
    graded = _grade(dist, plans, "03_vgg", tmp_path, """
        def vgg_stage(x, filters, convs):
            for _ in range(convs):
                x = layers.ReLU()(layers.Conv2D(filters, 3, padding="same")(x))
            return layers.MaxPooling2D(2, strides=2)(x)

        def my_vgg(stages, num_classes=1000, input_shape=(224, 224, 3)):
            inputs = keras.Input(input_shape)
            x = inputs
            for convs, filters in stages:
                x = vgg_stage(x, filters, convs)
            x = layers.Flatten()(x)
            for _ in range(2):
                x = layers.Dropout(0.5)(layers.ReLU()(layers.Dense(4096)(x)))
            return keras.Model(inputs, layers.Softmax()(layers.Dense(num_classes)(x)))
        """)
    assert graded["vgg_stage"][0] == 2 and graded["vgg"][0] == 4, graded


def test_resnet_with_activation_after_the_addition_scores_full_marks(dist, plans, tmp_path):
    graded = _grade(dist, plans, "05_resnet", tmp_path, """
        def basic_block(x, filters, stride):
            shortcut = x
            if stride != 1 or x.shape[-1] != filters:
                shortcut = conv_bn(x, filters, 1, stride)
            y = layers.Activation("relu")(conv_bn(x, filters, 3, stride))
            y = conv_bn(y, filters, 3)
            return layers.Activation("relu")(layers.Add()([shortcut, y]))
        """)
    assert graded["basic_block"][0] == 2 and graded["resnet18"][0] == 3, graded


def test_a_reference_built_outside_the_call_or_through_an_alias_gets_no_credit(dist, plans, tmp_path):
    # the reference's block under another name, called inside the answer: seen by its code
    graded = _grade(dist, plans, "09_modern_cnns", tmp_path, """
        from labkit.models import senet
        se = senet.squeeze_excite

        def my_squeeze_excite(x, ratio=16):
            return se(x, x.shape[-1] // ratio)
        """)
    assert graded["squeeze_excite"][0] == 0 and "no credit" in graded["squeeze_excite"][2]
    problems = check_source([(3, "from labkit.models import senet\nse = senet.squeeze_excite\n")])
    assert problems and "labkit.models.senet.squeeze_excite" in problems[0]


@pytest.mark.parametrize("lab, question, source", [
    ("01_cnn_building_blocks", "output_size", "def output_size(W, F, P, S):\n    return conv_output_size(W, F, P, S)\n"),
    ("02_alexnet", "lrn", "import keras\nfrom labkit.models.layers import LocalResponseNormalization\n\n"
                          "def lrn(a, k=2.0, n=5, alpha=1e-4, beta=0.75):\n"
                          "    layer = LocalResponseNormalization(size=n, k=k, alpha=alpha, beta=beta)\n"
                          "    return keras.ops.convert_to_numpy(layer(a[None]))[0]\n"),
    ("08_transfer_learning", "freeze_until", "import labkit.models\n\ndef freeze_until(model, name):\n"
                                             "    return labkit.models.freeze_up_to(model, name)\n"),
], ids=["output_size", "lrn", "freeze_until"])
def test_an_answer_by_hand_that_returns_labkits_own_gets_no_credit(dist, plans, tmp_path, lab, question, source):
    from labkit.inspect import conv_output_size

    graded = _grade(dist, plans, lab, tmp_path, source, context={"conv_output_size": conv_output_size})
    assert graded[question][0] == 0 and "no credit" in graded[question][2], graded[question]


def test_a_network_that_would_run_code_in_phase_2_is_refused_and_runs_nothing(dist, plans, tmp_path):
    marker = tmp_path / "phase2-ran-student-code"
    graded = _grade(dist, plans, "09_modern_cnns", tmp_path, f"""
        import keras

        def my_squeeze_excite(x, ratio=16):
            hook = keras.layers.Lambda(lambda t: (open({str(marker)!r}, "w").close(), t)[1])
            return hook(x)
        """)
    assert graded["squeeze_excite"][0] == 0 and "Python function" in graded["squeeze_excite"][2]
    # phase 1 (here, this process) ran the Lambda on a symbolic tensor; clear that and score again
    marker.unlink(missing_ok=True)
    autograder = dist / "autograder" / "09_modern_cnns"
    outcome = score(autograder, plans["09_modern_cnns"], tmp_path / "collected", autograder / "09_modern_cnns.ipynb", {})
    assert outcome.questions["squeeze_excite"]["score"] == 0 and not marker.exists()


def test_a_forged_collection_scores_nothing_and_unpickles_nothing(dist, plans, tmp_path):
    lab = "02_alexnet"
    autograder = dist / "autograder" / lab
    collected = tmp_path / "collected"
    collected.mkdir()
    import numpy as np
    with open(collected / "arrays.npz", "wb") as f:   # a pickled array where arrays belong
        np.save(f, np.array([object()], dtype=object), allow_pickle=True)
    (collected / "wire.json").write_text(json.dumps({"values": {}, "calls": [{"result": {"~": "raised"}}] * 3}))
    outcome = score(autograder, plans[lab], collected, autograder / f"{lab}.ipynb", {})
    assert all(q["score"] == 0 for q in outcome.questions.values())


@pytest.mark.parametrize("cell", [
    "import sys\nsys.setprofile(None)",
    "import threading\nthreading.Thread(target=print).start()",
    "exec(compile(open('labkit/inspect.py').read(), 'mine.py', 'exec'))",
    "import importlib\nm = importlib.import_module('labkit.models')",
    "import labkit.exercises\nlabkit.exercises.own = lambda fn, *a, **k: fn(*a, **k)",
    "from labkit import exercises as ex\nex.by_hand = lambda fn, *a, **k: fn(*a, **k)",
    "import otter.test_files.exception_test as t\nt.ExceptionTestFile.run = lambda self, env: None",
    "import inspect\nsource = inspect.getsource(print)",
    "from labkit import models\nnet = models.build('alexnet')",
    "import keras\nnet = keras.models.clone_model(alexnet)",
    "!cat /etc/passwd",
    "%run other.ipynb",
    "f = getattr(labkit, 'mod' + 'els')",
    "import labkit.models.provenance as p\np.reference_digests = dict",
    "__builtins__.print = None",
], ids=["setprofile", "thread", "exec-compile", "importlib", "patch-exercises", "patch-alias", "patch-otter",
        "getsource", "reference-build", "clone-model", "shell", "magic-run", "dynamic-getattr", "patch-provenance",
        "builtins"])
def test_the_source_check_refuses_each_evasion(cell):
    assert check_source([(7, cell)]), cell


@pytest.mark.parametrize("cell", [
    "%matplotlib inline\nimport numpy as np\nx = np.zeros(3)\nx[0] = 1",
    "from labkit.models.googlenet import INCEPTION\nfrom labkit.models import googlenet\nrow = googlenet.INCEPTION['3a']",
    "from labkit import models\nn = models.count_trainable(net)\nlayer.trainable = False",
    "import keras\nclass Mine(keras.layers.Layer):\n    def __init__(self, **kw):\n        super().__init__(**kw)",
    "value = getattr(layer, 'activation', None)",
], ids=["magic-and-arrays", "googlenet-table", "counting", "own-layer-class", "getattr-constant"])
def test_the_source_check_lets_honest_answers_through(cell):
    assert check_source([(7, cell)]) == []


def test_links_left_in_the_folder_phase_2_reads_are_found(tmp_path):
    from labkit.grading.phases import links as _links

    (tmp_path / "collected").mkdir()
    (tmp_path / "collected" / "wire.json").write_text("{}")
    assert _links(tmp_path, ("collected", "outputs")) == []
    (tmp_path / "collected" / "arrays.npz").symlink_to("/etc/hostname")
    (tmp_path / "outputs").symlink_to(tmp_path.parent)
    assert sorted(_links(tmp_path, ("collected", "outputs"))) == [str(tmp_path / "collected" / "arrays.npz"),
                                                                str(tmp_path / "outputs")]
