"""labkit.visualize on a network whose answer we know: class 0's evidence is a red square in the
top-left corner, so every explanation must point there. Runs under every backend (the JAX and
PyTorch subsets include it)."""
import keras
import numpy as np
import pytest

from labkit import visualize


def red_detector():
    """A tiny network with fixed weights: relu(red - 0.5) per pixel, averaged, votes for class 0."""
    inputs = keras.Input((32, 32, 3))
    red = keras.layers.Conv2D(1, 1, name="red")(inputs)
    evidence = keras.layers.ReLU(name="evidence")(red)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(evidence)
    logits = keras.layers.Dense(2, name="fc")(pooled)
    model = keras.Model(inputs, keras.layers.Softmax(name="predictions")(logits))
    model.get_layer("red").set_weights([np.array([1.0, 0.0, 0.0]).reshape(1, 1, 3, 1), np.array([-0.5])])
    model.get_layer("fc").set_weights([np.array([[40.0, -40.0]]), np.zeros(2)])
    return model


def square_image():
    image = np.full((32, 32, 3), 0.5, "float32")
    image[2:10, 2:10, 0] = 1.0          # the red square, top left
    return image


def test_saliency_and_grad_cam_point_at_the_evidence():
    model, image = red_detector(), square_image()
    inside = (slice(2, 10), slice(2, 10))
    for explanation in (visualize.saliency(model, image[None], class_index=0),
                        visualize.grad_cam(model, image[None], layer="evidence", class_index=0)):
        assert explanation.shape == (1, 32, 32) and explanation.max() == pytest.approx(1.0)
        outside = explanation[0].copy()
        outside[inside] = 0
        assert explanation[0][inside].mean() > 0.5 and outside.max() < 0.3
    assert visualize.last_conv_layer(model) == "evidence"


def test_occluding_the_evidence_lowers_the_score_more_than_occluding_elsewhere():
    model, image = red_detector(), square_image()
    drop, base = visualize.occlusion(model, image, class_index=0, patch=8, stride=2)
    assert base > 0.9 and drop.shape == (32, 32)
    assert drop[2:10, 2:10].mean() > 0.1 and abs(drop[20:, 20:]).max() < 1e-3
    assert np.unravel_index(drop.argmax(), drop.shape) in {(r, c) for r in range(2, 10) for c in range(2, 10)}


def test_activation_maximization_increases_the_target_activation():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((24, 24, 3)), keras.layers.Conv2D(8, 3, activation="relu", name="c1"),
                              keras.layers.Conv2D(8, 3, name="c2"),   # its feature maps, before any ReLU
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
    image, trace = visualize.activation_maximization(model, "c2", channel=3, steps=30)
    assert image.shape == (24, 24, 3) and 0 <= image.min() and image.max() <= 1
    assert trace[-1] > 2 * trace[0] + 1e-3 and trace[-1] >= max(trace[:5])
    with pytest.raises(ValueError):
        visualize.activation_maximization(model, "c2", channel=8)


def test_features_neighbours_and_embedding():
    model = red_detector()
    images = np.stack([square_image(), np.full((32, 32, 3), 0.5, "float32")])
    vectors = visualize.features(model, images)
    assert visualize.penultimate_layer(model) == "pool" and vectors.shape == (2, 1)
    rng = np.random.default_rng(0)
    clusters = np.concatenate([rng.normal(0, 0.1, (10, 5)) + 3 * np.eye(5)[0],
                               rng.normal(0, 0.1, (10, 5)) + 3 * np.eye(5)[1]])
    indices, distances = visualize.nearest_neighbours(clusters, clusters[[0, 15]], k=3)
    assert indices.shape == (2, 3) and indices[0, 0] == 0 and (indices[0] < 10).all() and (indices[1] >= 10).all()
    assert (np.diff(distances, axis=1) >= 0).all()
    for method in ("pca", "tsne"):
        xy = visualize.embed_2d(clusters, method=method)
        a, b = xy[:10].mean(axis=0), xy[10:].mean(axis=0)
        assert xy.shape == (20, 2) and np.linalg.norm(a - b) > 2 * xy[:10].std(axis=0).max()


def test_a_runs_inference_model_is_explained_through_its_normalisation():
    """labkit's inference models wrap the architecture: input -> normalisation -> network."""
    net = red_detector()
    inputs = keras.Input((32, 32, 3))
    wrapped = keras.Model(inputs, net(keras.layers.Normalization(mean=0.0, variance=1.0)(inputs)))
    front, inner = visualize.unwrap(wrapped)
    assert inner is net and visualize.spatial_layers(wrapped) == ["red", "evidence"]
    assert visualize.layers_at_depths(wrapped, (0.0, 0.99)) == ["red", "evidence"]
    image = square_image()
    cam = visualize.grad_cam(wrapped, image[None], class_index=0)
    np.testing.assert_allclose(cam, visualize.grad_cam(net, image[None], layer="evidence", class_index=0), atol=1e-6)
    np.testing.assert_allclose(visualize.features(wrapped, image[None]), visualize.features(net, image[None]), atol=1e-6)
    _, trace = visualize.activation_maximization(wrapped, "evidence", 0, steps=10)
    assert trace[-1] > trace[0]


def test_a_mixed_precision_network_is_explained_too():
    """The cpu profile trains ResNet-18 in bfloat16: its activations and scores are bfloat16."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 3)),
                              keras.layers.Conv2D(4, 3, name="c1", dtype="mixed_bfloat16"),
                              keras.layers.GlobalAveragePooling2D(dtype="mixed_bfloat16"),
                              keras.layers.Dense(3, dtype="mixed_bfloat16"),
                              keras.layers.Softmax(dtype="float32")])
    _, trace = visualize.activation_maximization(model, "c1", 1, steps=5)
    assert np.isfinite(trace).all()
    images = np.random.default_rng(0).random((2, 16, 16, 3)).astype("float32")
    assert visualize.saliency(model, images).shape == (2, 16, 16)
    assert visualize.grad_cam(model, images, layer="c1").shape == (2, 16, 16)
    vectors = visualize.features(model, images)
    assert vectors.dtype == np.float32 and visualize.nearest_neighbours(vectors, vectors[:1], k=2)[0][0, 0] == 0
