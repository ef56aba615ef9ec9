"""labkit's builders compute the reference implementations' functions: copy the weights of a
``keras.applications`` model (random values) into labkit's and compare outputs; ImageNet weights
through Keras' cache and checksum; the input scaling those weights expect."""
import hashlib

import keras
import numpy as np
import pytest

from labkit import models
from labkit.models import googlenet, pretrained

pytestmark = pytest.mark.slow

REFERENCES = {
    "vgg16": keras.applications.VGG16,
    "vgg19": keras.applications.VGG19,
    "resnet50": keras.applications.ResNet50,
    "resnet101": keras.applications.ResNet101,
    "resnet152": keras.applications.ResNet152,
}


def randomize(model, seed=0):
    """Random values everywhere, batch-norm statistics and biases included (a fresh model's
    zero means and unit variances would hide a wrongly copied one)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        if w.path.endswith(("moving_variance", "gamma")):
            value = rng.uniform(0.5, 1.5, shape)
        elif w.path.endswith("kernel"):  # He-like scale keeps 150 layers' activations finite
            value = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:-1])), shape)
        else:
            value = rng.normal(0.0, 0.1, shape)
        w.assign(value.astype("float32"))
    return model


def assert_same_function(reference, ours, shape, seed=1):
    x = np.random.default_rng(seed).uniform(-2, 2, (2, *shape)).astype("float32")
    expected = keras.ops.convert_to_numpy(reference(x, training=False))
    got = keras.ops.convert_to_numpy(ours(x, training=False))
    scale = np.abs(expected).max()
    assert scale > 0 and np.isfinite(scale)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_builder_computes_the_keras_applications_network(name):
    """Logits (no softmax, so nothing saturates) on random inputs agree to 1e-5 relative."""
    reference = randomize(REFERENCES[name](weights=None, classifier_activation=None))
    ours = models.build(name, num_classes=1000, classifier_activation=None)
    pairs = models.port_weights(reference, ours)
    assert len(pairs) == len(models.port.weighted_layers(ours))   # every layer of ours was copied
    assert_same_function(reference, ours, (224, 224, 3))


def test_resnet_port_folds_conv_biases_and_a_different_epsilon_into_batch_norm():
    reference = randomize(keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3)))
    ours = models.build("resnet50", num_classes=1000, input_shape=(64, 64, 3))
    models.port_weights(reference, ours)
    conv, bn = reference.get_layer("conv1_conv"), reference.get_layer("conv1_bn")
    assert conv.use_bias and not ours.get_layer("conv1_conv").use_bias and bn.epsilon != ours.get_layer("conv1_bn").epsilon
    mean = keras.ops.convert_to_numpy(ours.get_layer("conv1_bn").moving_mean)
    np.testing.assert_allclose(mean, keras.ops.convert_to_numpy(bn.moving_mean) - keras.ops.convert_to_numpy(conv.bias),
                               rtol=1e-6)
    features = keras.Model(ours.inputs, ours.get_layer("conv5_block3_out").output)
    assert_same_function(reference, features, (64, 64, 3))


def test_port_refuses_networks_that_differ():
    reference = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    with pytest.raises(ValueError):
        models.port_weights(reference, models.build("vgg11", num_classes=10, input_shape=(32, 32, 3)))
    with pytest.raises(ValueError):
        models.port_weights(reference, models.build("resnet18", num_classes=10, input_shape=(32, 32, 3)))


# --------------------------------------------------------------------------- padding

@pytest.mark.parametrize("name, options", [("resnet18", {}), ("resnet50", {}), ("resnet34", {"version": 2}),
                                           ("googlenet", {}), ("alexnet", {}), ("vgg16", {}), ("lenet5", {})])
def test_every_strided_layer_pads_symmetrically_and_explicitly(name, options):
    """No stride-2 convolution or max-pool leaves its padding to TensorFlow's 'same' (which pads
    less before than after); explicit paddings are symmetric, except Caffe's ceil-mode pools."""
    model = models.build(name, num_classes=10, **options)
    for layer in model.layers:
        strides = getattr(layer, "strides", None)
        window = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
        if strides is not None and max(strides) > 1 and max(window) > 1:
            assert layer.padding == "valid", layer.name
        if isinstance(layer, keras.layers.ZeroPadding2D):
            (top, bottom), (left, right) = layer.padding
            if name == "googlenet" and layer.name.startswith("pool"):   # Caffe's ceil mode: after only
                assert top == left == 0 and bottom == right == 1, layer.name
            else:
                assert top == bottom == left == right > 0, layer.name


def test_resnet_stem_pads_three_then_one_as_caffe():
    model = models.build("resnet18", num_classes=10)
    assert model.get_layer("conv1_pad").padding == ((3, 3), (3, 3))
    assert model.get_layer("pool1_pad").padding == ((1, 1), (1, 1))
    assert model.get_layer("conv3_block1_1_pad").padding == ((1, 1), (1, 1))   # the basic block's strided 3x3
    assert model.get_layer("pool1").output.shape[1:3] == (56, 56)


def test_googlenet_pools_round_up_as_caffe():
    """Caffe's (and torchvision's ceil_mode) 3x3/2 pool: 4x4 -> 2x2 with the last window
    hanging over the edge; 5x5 -> 2x2 exactly."""
    for side, expected in ((4, [[10, 11], [14, 15]]), (5, [[12, 14], [22, 24]])):
        x = keras.Input((side, side, 1))
        pooled = keras.Model(x, googlenet.max_pool(x, "p"))
        ramp = np.arange(side * side, dtype="float32").reshape(1, side, side, 1)
        got = keras.ops.convert_to_numpy(pooled(ramp))[0, ..., 0]
        np.testing.assert_array_equal(got, expected)
    model = models.build("googlenet", num_classes=10)
    assert model.get_layer("conv1_pad").padding == ((3, 3), (3, 3))
    assert [model.get_layer(n).output.shape[1] for n in ("pool1", "pool2", "pool3", "pool4")] == [56, 28, 14, 7]


# --------------------------------------------------------------------------- ImageNet weights

@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "keras" / "models"


def test_imagenet_weights_offline_name_the_file_and_the_folder(keras_home, monkeypatch):
    monkeypatch.setenv("LABKIT_OFFLINE", "1")
    with pytest.raises(models.MissingWeightsError) as err:
        models.build("resnet50", num_classes=17, weights="imagenet")
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in str(err.value)
    assert str(keras_home) in str(err.value)


@pytest.mark.parametrize("name, options", [("alexnet", {}), ("googlenet", {}), ("resnet18", {}),
                                           ("lenet5", {}), ("resnet50", {"version": 2}),
                                           ("vgg16", {"batch_norm": True}), ("densenet161", {}),
                                           ("resnext50", {}), ("seresnet50", {})])
def test_no_imagenet_weights_exist_for_these(name, options):
    assert not models.has_imagenet_weights(name, **options)
    with pytest.raises(ValueError) as err:
        models.build(name, num_classes=17, weights="imagenet", **options)
    assert not isinstance(err.value, models.MissingWeightsError)


def _publish(reference, keras_home, monkeypatch, name, top):
    """Stand in for Keras' server: the file a connected machine would have in its cache (legacy
    HDF5, as Keras publishes), with its checksum where labkit looks it up."""
    entry = pretrained.IMAGENET[name]
    file_name = entry.file(top)[0]
    keras_home.mkdir(parents=True, exist_ok=True)
    path = keras_home / file_name
    reference.save(str(path))
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    field = "md5" if top else "md5_notop"
    monkeypatch.setitem(pretrained.IMAGENET, name, pretrained.dataclasses.replace(entry, **{field: md5}))
    return path


def test_imagenet_backbone_loads_from_keras_cache_with_a_new_classifier(keras_home, monkeypatch):
    monkeypatch.setenv("LABKIT_OFFLINE", "1")   # found in the cache and checked: nothing to download
    reference = randomize(keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3)))
    _publish(reference, keras_home, monkeypatch, "resnet50", top=False)
    fresh = models.build("resnet50", num_classes=17, input_shape=(64, 64, 3))
    model = models.build("resnet50", num_classes=17, input_shape=(64, 64, 3), weights="imagenet")
    features = keras.Model(model.inputs, model.get_layer("conv5_block3_out").output)
    assert_same_function(reference, features, (64, 64, 3))
    assert model.get_layer("fc").kernel.shape == (2048, 17)   # a new head, initialised as a fresh model's
    assert np.std(keras.ops.convert_to_numpy(model.get_layer("fc").kernel)) == pytest.approx(
        np.std(keras.ops.convert_to_numpy(fresh.get_layer("fc").kernel)), rel=0.2)


def test_a_corrupted_weights_file_is_not_used(keras_home, monkeypatch):
    monkeypatch.setenv("LABKIT_OFFLINE", "1")
    reference = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    path = _publish(reference, keras_home, monkeypatch, "vgg16", top=False)
    path.write_bytes(path.read_bytes()[:-100])     # truncated: the checksum no longer matches
    with pytest.raises(models.MissingWeightsError):
        models.build("vgg16", num_classes=17, input_shape=(32, 32, 3), weights="imagenet")


def test_preprocess_is_keras_caffe_preprocessing():
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = keras.applications.vgg16.preprocess_input(images.copy())
    for name in ("vgg16", "resnet50"):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(models.preprocess(name)(images)), expected, atol=1e-4)
        scaled = models.preprocess(name, input_range=1.0)(images / 255.0)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(scaled), expected, atol=1e-3)
    with pytest.raises(ValueError):
        models.preprocess("alexnet")


@pytest.mark.parametrize("name, reference", [("densenet121", keras.applications.DenseNet121),
                                             ("efficientnetb0", keras.applications.EfficientNetB0)])
def test_densenet_and_efficientnet_backbones_load_from_keras_cache(name, reference, keras_home, monkeypatch):
    monkeypatch.setenv("LABKIT_OFFLINE", "1")
    theirs = randomize(reference(weights=None, include_top=False, input_shape=(64, 64, 3)))
    for layer in theirs.layers:  # Keras' EfficientNet normalises inside; labkit's preprocess() does that
        if isinstance(layer, keras.layers.Normalization):
            for w in layer.weights:
                w.assign(np.full(w.shape, 1.0 if w.path.endswith("variance") else 0.0, "float32"))
    _publish(theirs, keras_home, monkeypatch, name, top=False)
    model = models.build(name, num_classes=17, input_shape=(64, 64, 3), weights="imagenet")
    last = "relu" if name.startswith("densenet") else "top_activation"
    features = keras.Model(model.inputs, model.get_layer(last).output)
    scale = 255.0 if name.startswith("efficientnet") else 1.0
    scaled = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Rescaling(scale), theirs])
    assert_same_function(scaled, features, (64, 64, 3))


def test_preprocess_for_densenet_and_efficientnet_is_imagenets_mean_and_std():
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = keras.applications.densenet.preprocess_input(images.copy())   # Keras' "torch" mode
    for name in ("densenet121", "efficientnetb3"):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(models.preprocess(name)(images)), expected, atol=1e-4)
        scaled = models.preprocess(name, input_range=1.0)(images / 255.0)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(scaled), expected, atol=1e-4)
