"""Lab 09's families: DenseNet, ResNeXt, SE-ResNet, EfficientNet. Exact counts, the papers' tables,
and the same function as ``keras.applications`` where Keras has the network."""
import keras
import numpy as np
import pytest

from labkit import models
from labkit.models import efficientnet, resnext, senet

from test_reference import assert_same_function, randomize

# trainable parameters at 224x224x3 and 1000 classes: torchvision's and keras.applications' counts
COUNTS = [
    ("densenet121", 7_978_856),
    ("densenet169", 14_149_480),
    ("densenet201", 20_013_928),
    ("densenet161", 28_681_000),
    ("resnext50", 25_028_904),
    ("efficientnetb0", 5_288_548),
    ("seresnet50", 28_088_024),
]


@pytest.mark.parametrize("name, expected", COUNTS)
def test_trainable_parameters_at_the_papers_size(name, expected):
    model = models.build(name, num_classes=1000)
    assert tuple(model.inputs[0].shape[1:]) == (224, 224, 3)
    assert models.count_trainable(model) == expected


def test_se_costs_what_the_se_papers_formula_says():
    """Eq. 5 of Hu et al.: (2/r) Σ_s N_s C_s² extra weights; the biases (C/r + C a block) on top."""
    plain = models.count_trainable(models.build("resnet50", num_classes=1000))
    se = models.build("seresnet50", num_classes=1000)
    stages = [(3, 256), (4, 512), (6, 1024), (3, 2048)]
    weights = sum(2 * n * c * c // 16 for n, c in stages)
    biases = sum(n * (c // 16 + c) for n, c in stages)
    assert weights == 2_514_944 and models.count_trainable(se) - plain == weights + biases
    gates = [layer for layer in se.layers if layer.name.endswith("_se_excite")]
    assert len(gates) == 16 and se.get_layer("conv3_block1_se_reduce").filters == 512 // 16


def test_resnext_block_matches_resnets_complexity_with_32_paths():
    """The paper's Figure 1: 32 paths of width 4 cost what one bottleneck of width 64 does (~70k)."""
    ours, resnet = resnext.block_parameters(32, 4), resnext.block_parameters(1, 64)
    assert (ours, resnet) == (70_144, 69_632)
    assert resnext.block_parameters(2, 64) == 2 * resnet          # Table 2's 2x64d: twice the cost
    net = models.build("resnext50", num_classes=1000)
    grouped = net.get_layer("conv2_block1_2_conv")
    assert grouped.groups == 32 and tuple(grouped.kernel.shape) == (3, 3, 4, 128)
    assert tuple(net.get_layer("conv3_block1_2_conv").output.shape[1:]) == (28, 28, 256)  # stride in the 3x3


# the paper's Table 2: parameters (millions) and FLOPs (billions, multiply-adds) of B0-B7
EFFICIENTNET_TABLE = {"b0": (5.3, 0.39), "b1": (7.8, 0.70), "b2": (9.2, 1.0), "b3": (12, 1.8), "b4": (19, 4.2),
                      "b5": (30, 9.9), "b6": (43, 19), "b7": (66, 37)}


def test_compound_scaling_gives_the_papers_b1_to_b7():
    assert efficientnet.ALPHA * efficientnet.BETA ** 2 * efficientnet.GAMMA ** 2 == pytest.approx(1.92, abs=0.005)
    assert efficientnet.compound_scaling(1)["flops"] == pytest.approx(1.92, abs=0.005)
    assert efficientnet.compound_scaling(0) == {"depth": 1.0, "width": 1.0, "resolution": 224.0, "flops": 1.0}
    for variant, (params_m, _) in EFFICIENTNET_TABLE.items():
        with models.shapes_only():
            net = models.build(f"efficientnet{variant}", num_classes=1000)
            resolution = efficientnet.SCALED[variant][2]
            assert tuple(net.inputs[0].shape[1:]) == (resolution, resolution, 3)
            # the paper rounds to two digits (9.2 M for B2's 9.11 M): within 2%
            assert models.count_trainable(net) / 1e6 == pytest.approx(params_m, rel=0.02), variant
    # the published coefficients are near the rule, not on it: B7's depth is φ = 6.2, its width φ = 7.3
    phi = efficientnet.implied_phi("b7")
    assert 6 < phi["depth"] < phi["resolution"] < phi["width"] < 7.5


def test_efficientnet_operations_match_the_papers_table():
    from labkit import inspect

    for variant in ("b0", "b1", "b2", "b3"):
        with models.shapes_only():
            macs = inspect.summarize(models.build(f"efficientnet{variant}", num_classes=1000))["macs"] / 1e9
        assert macs == pytest.approx(EFFICIENTNET_TABLE[variant][1], rel=0.05), variant


@pytest.mark.slow
@pytest.mark.parametrize("name, reference, scale", [
    ("densenet121", keras.applications.DenseNet121, 1.0),
    ("densenet169", keras.applications.DenseNet169, 1.0),
    ("densenet201", keras.applications.DenseNet201, 1.0),
    ("efficientnetb0", keras.applications.EfficientNetB0, 255.0),
])
def test_builder_computes_the_keras_applications_network(name, reference, scale):
    """Logits on random inputs agree after copying Keras' (random) weights, at an even and an odd
    size (strided layers pad by the input's parity). Keras' EfficientNet rescales 0-255 input
    itself; labkit's networks take the normalised input."""
    for size in (64, 71):
        theirs = randomize(reference(weights=None, classifier_activation=None, input_shape=(size, size, 3)))
        for layer in theirs.layers:  # Keras' input normalisation stays the identity (mean 0, variance 1)
            if isinstance(layer, keras.layers.Normalization):
                for w in layer.weights:
                    w.assign(np.full(w.shape, 1.0 if w.path.endswith("variance") else 0.0, "float32"))
        ours = models.build(name, num_classes=1000, input_shape=(size, size, 3), classifier_activation=None)
        pairs = models.port_weights(theirs, ours)
        assert len(pairs) == len(models.port.weighted_layers(ours))
        scaled = keras.Sequential([keras.Input((size, size, 3)), keras.layers.Rescaling(scale), theirs])
        assert_same_function(scaled, ours, (size, size, 3))
        keras.backend.clear_session()


def test_squeeze_excite_scales_each_channel_by_a_gate_between_0_and_1():
    inputs = keras.Input((5, 5, 8))
    block = keras.Model(inputs, senet.squeeze_excite(inputs, 2))
    x = np.random.default_rng(0).uniform(0.5, 1.5, (2, 5, 5, 8)).astype("float32")
    ratio = keras.ops.convert_to_numpy(block(x)) / x
    assert np.allclose(ratio, ratio[:, :1, :1, :], atol=1e-6)          # one weight per channel and image
    assert ((ratio > 0) & (ratio < 1)).all()


@pytest.mark.parametrize("name", ["densenet121", "resnext50", "seresnet50", "efficientnetb0"])
def test_each_family_computes_at_a_small_input(name):
    """Every backend: a forward pass at the smallest input gives probabilities (the JAX and PyTorch
    subsets run this; the TensorFlow run also trains a step of each, tests/test_models.py)."""
    net = models.build(name, num_classes=17, input_shape=(32, 32, 3))
    probs = net.predict(np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32), verbose=0)  # compiled once
    assert probs.shape == (2, 17) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_inception_v3_modules_are_keras_applications_mixed_blocks():
    """Each module has the parameters and output of the released model's block (mixed0, mixed1,
    mixed4, mixed9, mixed10); the factorisations save what the paper says."""
    from labkit.models import inception_v3 as v3

    reference = keras.applications.InceptionV3(weights=None)
    layer_names = [layer.name for layer in reference.layers]

    def params_up_to(name):
        return models.count_trainable(keras.Model(reference.inputs, reference.get_layer(name).output))

    stem = next(n for n in reversed(layer_names[:layer_names.index("mixed0")]) if n.startswith("max_pooling2d"))
    cases = [(stem, "mixed0", lambda x: v3.module_a(x, 32, "a")), ("mixed0", "mixed1", lambda x: v3.module_a(x, 64, "a")),
             ("mixed3", "mixed4", lambda x: v3.module_b(x, 128, "b")), ("mixed8", "mixed9", lambda x: v3.module_c(x, "c")),
             ("mixed9", "mixed10", lambda x: v3.module_c(x, "c"))]
    for before, block, build in cases:
        inputs = keras.Input(tuple(reference.get_layer(before).output.shape[1:]))
        ours = keras.Model(inputs, build(inputs))
        assert ours.output.shape[1:] == reference.get_layer(block).output.shape[1:], block
        assert models.count_trainable(ours) == params_up_to(block) - params_up_to(before), block
        keras.backend.clear_session()
    assert v3.saving(5, "smaller") == pytest.approx(0.28) and v3.saving(3) == pytest.approx(1 / 3)
    assert v3.saving(7) == pytest.approx(1 - 14 / 49)


def test_highway_gate_starts_mostly_closed_and_costs_a_convolution():
    from labkit.models import highway

    net = models.build("cifar_highway", depth=20, num_classes=10)
    plain = models.build("cifar_resnet", depth=20, residual=False, num_classes=10)
    resnet = models.build("cifar_resnet", depth=20, num_classes=10)
    gates = [layer for layer in net.layers if layer.name.endswith("_gate")]
    assert len(gates) == 9
    assert models.count_trainable(net) - models.count_trainable(resnet) == sum(
        highway.gate_parameters(int(g.filters)) + (int(g.input.shape[-1]) - int(g.filters)) * 9 * int(g.filters)
        for g in gates)
    assert models.count_trainable(resnet) > models.count_trainable(plain)   # the two projections
    t = keras.Model(net.inputs, net.get_layer("stage1_block1_gate").output)
    opening = keras.ops.convert_to_numpy(t(np.zeros((1, 32, 32, 3), "float32")))
    assert np.allclose(opening, 1 / (1 + np.e), atol=0.05)   # sigmoid(-1): the input is mostly carried
