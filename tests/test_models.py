"""labkit.models: faithful to the papers (exact parameter counts, shapes) and usable at small inputs."""
import keras
import numpy as np
from keras.ops import convert_to_numpy as to_numpy
import pytest

from labkit import models
from labkit.models.layers import LENET_C3_TABLE, LocalResponseNormalization, PartialConv2D, Subsampling

# name, options, trainable parameters at 1000 classes and the paper's input (torchvision's counts)
PAPER_COUNTS = [
    ("alexnet", {}, 62_378_344),
    ("alexnet", {"two_gpu": True}, 60_965_224),
    ("vgg11", {}, 132_863_336),
    ("vgg13", {}, 133_047_848),
    ("vgg16", {}, 138_357_544),
    ("vgg19", {}, 143_667_240),
    ("resnet18", {}, 11_689_512),
    ("resnet34", {}, 21_797_672),
    ("resnet50", {}, 25_557_032),
    ("resnet101", {}, 44_549_160),
    ("resnet152", {}, 60_192_808),
    ("googlenet", {}, 6_998_552),
]


@pytest.mark.parametrize("name,options,expected", PAPER_COUNTS, ids=lambda v: str(v))
def test_trainable_parameters_match_the_papers(name, options, expected):
    # counting needs the weights' shapes, not their values (the equality of both ways of
    # building is tested below: test_a_network_built_from_shapes_alone_counts_the_same)
    with models.shapes_only():
        model = models.build(name, num_classes=1000, **options)
        assert models.count_trainable(model) == expected


def test_keras_count_includes_batch_norm_statistics():
    with models.shapes_only():
        model = models.build("resnet50", num_classes=1000)
    assert models.count_all(model) == 25_610_152  # + 53,120 moving means and variances
    assert models.count_trainable(model) == 25_557_032


@models.shapes_only()   # counts and shapes: the weights' values are never read
def test_vgg_configurations_c_and_a_lrn():
    c = models.build("vgg16", num_classes=1000, config="C")
    # C = B + three 1x1 convolutions (256->256, 512->512, 512->512)
    assert models.count_trainable(c) == 133_047_848 + (256 * 256 + 256) + 2 * (512 * 512 + 512)
    assert c.get_layer("conv3_3").kernel.shape == (1, 1, 256, 256)
    a_lrn = models.build("vgg11", num_classes=1000, config="A-LRN")
    assert isinstance(a_lrn.get_layer("norm1"), LocalResponseNormalization)
    assert models.count_trainable(a_lrn) == 132_863_336  # LRN has no weights
    with pytest.raises(ValueError, match="vgg13 has configuration"):
        models.build("vgg13", config="D")
    bn = models.build("vgg16", num_classes=1000, batch_norm=True)
    assert models.count_trainable(bn) == 138_357_544 + 2 * sum([64] * 2 + [128] * 2 + [256] * 3 + [512] * 6)


@models.shapes_only()
def test_alexnet_layout_follows_the_course_table():
    model = models.build("alexnet", num_classes=1000)
    shapes = {l.name: tuple(l.output.shape[1:]) for l in model.layers}
    assert shapes["conv1"] == (55, 55, 96) and shapes["pool1"] == (27, 27, 96)
    assert shapes["conv2"] == (27, 27, 256) and shapes["pool2"] == (13, 13, 256)
    assert shapes["conv5"] == (13, 13, 256) and shapes["pool5"] == (6, 6, 256)
    names = [l.name for l in model.layers]
    assert names.index("pool1") < names.index("norm1") < names.index("conv2")
    assert names.index("drop6") < names.index("fc6") and names.index("drop7") < names.index("fc7")
    norm = model.get_layer("norm1")
    assert (norm.size, norm.k, norm.alpha, norm.beta) == (5, 2.0, 1e-4, 0.75)
    two = models.build("alexnet", num_classes=1000, two_gpu=True)
    assert [two.get_layer(n).groups for n in ("conv1", "conv2", "conv3", "conv4", "conv5")] == [1, 2, 1, 2, 2]


@models.shapes_only()
def test_googlenet_shapes_follow_table_1():
    model = models.build("googlenet", num_classes=1000)
    expected = {"3a": (28, 28, 256), "3b": (28, 28, 480), "4a": (14, 14, 512), "4b": (14, 14, 512),
                "4c": (14, 14, 512), "4d": (14, 14, 528), "4e": (14, 14, 832), "5a": (7, 7, 832),
                "5b": (7, 7, 1024)}
    for module, shape in expected.items():
        assert tuple(model.get_layer(f"inception_{module}").output.shape[1:]) == shape
    assert tuple(model.get_layer("conv2").output.shape[1:]) == (56, 56, 192)
    assert tuple(model.get_layer("avg_pool").output.shape[1:]) == (1024,)
    assert model.get_layer("dropout").rate == 0.4
    assert model.get_layer("inception_3a_5x5").kernel.shape == (5, 5, 16, 32)  # 5x5, as in the paper


def test_googlenet_auxiliary_heads_are_training_only():
    model = models.build("googlenet", num_classes=17, input_shape=(224, 224, 3), aux_classifiers=True)
    assert model.output_names == ["predictions", "aux1", "aux2"]
    assert tuple(model.get_layer("aux1_pool").output.shape[1:]) == (4, 4, 512)
    assert tuple(model.get_layer("aux2_pool").output.shape[1:]) == (4, 4, 528)
    assert model.get_layer("aux1_drop").rate == 0.7
    plain = models.inference_model(model)
    assert len(plain.outputs) == 1
    assert models.count_trainable(plain) == models.count_trainable(models.build("googlenet", 17))
    x = np.random.default_rng(0).random((2, 224, 224, 3), dtype=np.float32)
    np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0)[0], rtol=1e-5, atol=1e-6)


@models.shapes_only()
def test_resnet_blocks_and_names():
    r50 = models.build("resnet50", num_classes=1000)
    assert tuple(r50.get_layer("conv2_block1_out").output.shape[1:]) == (56, 56, 256)
    assert tuple(r50.get_layer("conv3_block1_out").output.shape[1:]) == (28, 28, 512)
    assert tuple(r50.get_layer("conv5_block3_out").output.shape[1:]) == (7, 7, 2048)
    assert r50.get_layer("conv4_block1_0_conv").strides == (2, 2)  # projection shortcut
    assert r50.get_layer("conv4_block2_3_conv").kernel.shape == (1, 1, 256, 1024)  # bottleneck x4
    with pytest.raises(ValueError):
        r50.get_layer("conv4_block2_0_conv")  # identity shortcut inside a stage
    assert not r50.get_layer("conv1_conv").use_bias
    # the residual branch starts at zero (its last BN scale), the others at one (the values drawn
    # from these are checked for basic blocks in test_resnet_can_start_from_keras_defaults)
    assert type(r50.get_layer("conv4_block2_3_bn").gamma_initializer).__name__ == "Zeros"
    assert type(r50.get_layer("conv4_block2_2_bn").gamma_initializer).__name__ == "Ones"
    r18 = models.build("resnet18", num_classes=1000)
    assert r18.get_layer("conv3_block1_1_conv").kernel.shape == (3, 3, 64, 128)  # basic block


@pytest.mark.parametrize("name", ["resnet18", "seresnet18"])
def test_resnet_can_start_from_keras_defaults(name):
    """He-normal kernels and zero-started residual branches by default; Keras' Glorot-uniform
    kernels and BN scales of 1 on request (lab 05's network starts there)."""
    def start(**options):
        net = models.build(name, num_classes=17, input_shape=(64, 64, 3), **options)
        convs = [l for l in net.layers if isinstance(l, keras.layers.Conv2D) and l.name.endswith("_conv")]
        gammas = [to_numpy(l.gamma) for l in net.layers if isinstance(l, keras.layers.BatchNormalization)]
        return {type(l.kernel_initializer).__name__ for l in convs}, min(float(g.min()) for g in gammas)

    assert start() == ({"HeNormal"}, 0.0)
    assert start(kernel_initializer="glorot_uniform", zero_init_residual=False) == ({"GlorotUniform"}, 1.0)
    if name == "resnet18":  # pre-activation blocks too (SE-ResNet is version 1 only)
        assert start(version=2, kernel_initializer="glorot_uniform")[0] == {"GlorotUniform"}


def test_resnet_v2_is_pre_activation():
    v2 = models.build("resnet50", num_classes=1000, version=2)
    names = [l.name for l in v2.layers]
    # inside a block: BN and ReLU come before the convolution they feed
    assert names.index("conv3_block2_preact_bn") < names.index("conv3_block2_1_conv")
    assert names.index("conv3_block2_1_relu") < names.index("conv3_block2_2_conv")
    assert isinstance(v2.get_layer("conv3_block2_out"), keras.layers.Add)  # no ReLU after the addition
    assert "post_bn" in names and names.index("post_relu") < names.index("avg_pool")
    assert models.count_trainable(v2) == 25_549_352


def test_lenet5_original_and_modern():
    original = models.build("lenet5", num_classes=10)
    modern = models.build("lenet5", num_classes=10, form="modern")
    per_layer = lambda m: {n: models.count_trainable(keras.Model(m.inputs, m.get_layer(n).output)) for n in ("C1", "S2", "C3", "S4", "C5", "F6")}
    counts = {n: int(sum(np.prod(w.shape) for w in original.get_layer(n).trainable_weights)) for n in ("C1", "S2", "C3", "S4", "C5", "F6")}
    assert counts == {"C1": 156, "S2": 12, "C3": 1516, "S4": 32, "C5": 48120, "F6": 10164}
    modern_counts = {n: int(sum(np.prod(w.shape) for w in modern.get_layer(n).trainable_weights)) for n in ("C1", "S2", "C3", "S4", "C5", "F6")}
    assert modern_counts == {"C1": 156, "S2": 0, "C3": 2416, "S4": 0, "C5": 48120, "F6": 10164}
    assert tuple(original.get_layer("C5").output.shape[1:]) == (1, 1, 120)
    assert per_layer(original)["C3"] == 156 + 12 + 1516


def test_minimum_input_sizes_raise_clear_errors():
    for name in models.available():
        minimum = models.min_input_size(name)
        channels = models.paper_input_shape(name)[-1]
        with pytest.raises(ValueError, match=f"at least {minimum}x{minimum}"):
            models.build(name, num_classes=17, input_shape=(minimum - 1, minimum - 1, channels))
    assert models.min_input_size("alexnet") == 67


def test_bad_names_and_options():
    with pytest.raises(ValueError, match="Unknown model 'resnet20'.*resnet18"):
        models.build("resnet20")
    with pytest.raises(ValueError, match="unexpected keyword argument"):
        models.build("resnet18", aux_classifiers=True)
    with pytest.raises(ValueError, match="num_classes"):
        models.build("vgg11", num_classes=0)
    with pytest.raises(ValueError, match="input_shape"):
        models.build("vgg11", input_shape=(64, 64))
    assert models.build("ResNet-18", num_classes=5, input_shape=(32, 32, 3)).name == "resnet18"


# every family once: its larger variants are the same blocks, more of them
SCALED_VARIANTS = {"seresnet18", "seresnet34", "seresnet101", "seresnet152", "resnext101", "densenet169",
                   "densenet201", "densenet161", *(f"efficientnetb{i}" for i in range(1, 8))}


@pytest.mark.parametrize("name", [n for n in models.available() if n not in SCALED_VARIANTS])
def test_every_builder_trains_one_step_at_a_small_input(name):
    side = models.min_input_size(name)
    channels = models.paper_input_shape(name)[-1]
    options = {"aux_classifiers": True} if name == "googlenet" else {}
    model = models.build(name, num_classes=17, input_shape=(side, side, channels), **options)
    rng = np.random.default_rng(0)
    x = rng.random((8, side, side, channels), dtype=np.float32)
    y = np.arange(8) * 2 % 17
    losses = ["sparse_categorical_crossentropy"] * len(model.outputs)
    # eager: one step does not repay tracing a graph (ResNet-34: 2 s instead of 7 s)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss=losses,
                  loss_weights=[1.0] + [0.3] * (len(losses) - 1), run_eagerly=True)
    before = [to_numpy(w).copy() for w in model.trainable_weights[:2]]
    logs = model.train_on_batch(x, [y] * len(model.outputs), return_dict=True)
    assert np.isfinite(logs["loss"])
    assert any(not np.allclose(a, to_numpy(w)) for a, w in zip(before, model.trainable_weights[:2]))
    probs = models.inference_model(model).predict(x, verbose=0)
    assert probs.shape == (8, 17)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    keras.backend.clear_session()


# --------------------------------------------------------------------------- custom layers

def test_lrn_matches_the_paper_formula():
    x = np.random.default_rng(1).normal(size=(1, 2, 2, 7)).astype(np.float32) * 10
    out = to_numpy(LocalResponseNormalization()(x))
    k, n, alpha, beta = 2.0, 5, 1e-4, 0.75
    expected = np.empty_like(x)
    for i in range(7):
        lo, hi = max(0, i - n // 2), min(6, i + n // 2)
        expected[..., i] = x[..., i] / (k + alpha * (x[..., lo:hi + 1] ** 2).sum(-1)) ** beta
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="odd"):
        LocalResponseNormalization(size=4)


@pytest.mark.parametrize("size,k,alpha,beta", [(5, 2.0, 1e-4, 0.75), (5, 1.0, 1e-4 / 5, 0.75), (3, 1.0, 1e-3, 0.5)])
def test_lrn_equals_tensorflows_lrn(size, k, alpha, beta):
    """AlexNet's k, n, alpha, beta (and Caffe's alpha / n, GoogLeNet's), against tf.nn's kernel."""
    tf = pytest.importorskip("tensorflow")
    x = np.random.default_rng(2).normal(size=(2, 5, 5, 96)).astype(np.float32) * 30
    ours = to_numpy(LocalResponseNormalization(size, k, alpha, beta)(x))
    reference = tf.nn.local_response_normalization(x, size // 2, k, alpha, beta).numpy()
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)


def test_lrn_computes_in_float32_under_mixed_precision():
    x = np.full((1, 2, 2, 5), 300.0, np.float32)   # squares summed over 5 channels overflow float16
    layer = LocalResponseNormalization(dtype="mixed_float16")
    out = to_numpy(layer(x))
    assert out.dtype == np.float16 and np.isfinite(out).all()
    neighbours = np.array([3, 4, 5, 4, 3])          # channels within n=5 of each, inside the input
    np.testing.assert_allclose(out[0, 0, 0], 300 / (2 + 1e-4 * neighbours * 300**2) ** 0.75, rtol=2e-3)


def test_partial_conv_is_a_masked_full_convolution():
    layer = PartialConv2D(5)
    x = np.random.default_rng(2).normal(size=(2, 14, 14, 6)).astype(np.float32)
    y = to_numpy(layer(x))
    full = np.zeros((5, 5, 6, 16), np.float32)
    for (i, j), kernel in zip(layer.indices, to_numpy(layer.kernel)):
        full[:, :, i, j] = kernel
    conv = keras.layers.Conv2D(16, 5)
    conv.build(x.shape)
    conv.set_weights([full, to_numpy(layer.bias)])
    np.testing.assert_allclose(y, to_numpy(conv(x)), rtol=1e-4, atol=1e-5)
    assert sum(len(row) for row in LENET_C3_TABLE) == 60


def test_subsampling_is_coefficient_times_sum_plus_bias():
    layer = Subsampling(2)
    x = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    layer.build(x.shape)
    layer.set_weights([np.array([1.0, 2.0, 0.5], np.float32), np.array([0.0, 1.0, -1.0], np.float32)])
    y = to_numpy(layer(x))
    block_sum = x.reshape(2, 2, 2, 2, 2, 3).sum(axis=(2, 4))
    np.testing.assert_allclose(y, block_sum * [1.0, 2.0, 0.5] + [0.0, 1.0, -1.0], rtol=1e-6)


def test_models_with_custom_layers_save_and_load(tmp_path):
    model = models.build("lenet5", num_classes=10)
    x = np.random.default_rng(3).random((3, 32, 32, 1), dtype=np.float32)
    model.save(tmp_path / "lenet.keras")
    loaded = keras.models.load_model(tmp_path / "lenet.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)
    alex = models.build("alexnet", num_classes=17, input_shape=(67, 67, 3))
    alex.save(tmp_path / "alex.keras")
    assert isinstance(keras.models.load_model(tmp_path / "alex.keras").get_layer("norm1"), LocalResponseNormalization)


@pytest.mark.parametrize("depth, residual, params", [(20, True, 272_474), (56, True, 855_770),
                                                     (20, False, 269_722), (56, False, 853_018)])
def test_cifar_networks_of_the_degradation_experiment(depth, residual, params):
    """He et al. 2016, section 4.2: 6n + 2 weight layers; ResNet-20 0.27 M and ResNet-56 0.85 M
    parameters with option A shortcuts, a few thousand more with labkit's projections (option B)."""
    net = models.build("cifar_resnet", num_classes=10, input_shape=(32, 32, 3), depth=depth, residual=residual)
    assert models.count_trainable(net) == params
    weighted = [l for l in net.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))
                and not l.name.endswith("_0_conv")]  # the projection shortcuts are not counted as layers
    assert len(weighted) == depth
    adds = [l for l in net.layers if isinstance(l, keras.layers.Add)]
    assert len(adds) == (3 * (depth - 2) // 6 if residual else 0)
    assert tuple(net.get_layer("avg_pool").input.shape[1:]) == (8, 8, 64)
    with pytest.raises(ValueError):
        models.build("cifar_resnet", depth=21)


def test_a_network_built_from_shapes_alone_counts_the_same():
    """``models.shapes_only``: the layers and weight shapes without drawing the weights (counts,
    ``labkit.inspect``), for VGG-11's 133 million as for GoogLeNet's aux heads."""
    from labkit import inspect

    real = [models.build(name, num_classes=1000, **options) for name, options in
            (("vgg11", {}), ("googlenet", {"aux_classifiers": True}))]
    counts = [(models.count_trainable(n), inspect.summarize(n)["macs"]) for n in real]
    with models.shapes_only():
        shaped = [models.build(name, num_classes=1000, **options) for name, options in
                  (("vgg11", {}), ("googlenet", {"aux_classifiers": True}))]
        assert [(models.count_trainable(n), inspect.summarize(n)["macs"]) for n in shaped] == counts
    assert counts[0][0] == 132_863_336
