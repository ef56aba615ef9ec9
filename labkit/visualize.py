"""What a trained network learned (lab 10): the inputs it responds to, where it looks, and how it
arranges the images it has seen. Backend-neutral: ``keras.ops`` and the backend's own gradient
(``labkit.backend.input_gradient``). The models are the inference models of labkit's runs: they
take images with values in [0, 1] and output class probabilities.

    activation_maximization(model, "conv3_block2_out", channel=5)   # deck 002: what input maximises a map?
    saliency(model, images)            # |d score / d pixel|     (Simonyan et al. 2014)
    grad_cam(model, images)            # class activation map    (Selvaraju et al. 2017)
    occlusion(model, image)            # the score when a patch is hidden (Zeiler & Fergus 2014)
    features(model, images)            # the penultimate layer's vectors
    embed_2d(vectors)                  # t-SNE (scikit-learn)
    nearest_neighbours(vectors, query) # the training images closest in feature space (scikit-learn)
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from labkit.backend import input_gradient


def unwrap(model):
    """``(front, net)``: a run's inference model is input -> normalisation -> architecture (a
    nested model); ``net`` is the architecture and ``front(x)`` applies what comes before it. A
    plain architecture is its own ``net`` with nothing in front."""
    nets = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nets) != 1:
        return (lambda x: x), model
    before = model.layers[1:model.layers.index(nets[0])]

    def front(x):
        for layer in before:
            x = layer(x, training=False)
        return x

    return front, nets[0]


def _sub_model(net, layer: str):
    """``net`` from its input to ``layer``'s output."""
    return keras.Model(net.inputs, net.get_layer(layer).output)


_PASS_THROUGH = (keras.layers.InputLayer, keras.layers.BatchNormalization, keras.layers.ZeroPadding2D,
                 keras.layers.Dropout)


def spatial_layers(model) -> list[str]:
    """The layers of ``model``'s architecture with feature maps (4-D outputs), in order; padding,
    batch norm and dropout left out."""
    _, net = unwrap(model)
    return [layer.name for layer in net.layers
            if not isinstance(layer, _PASS_THROUGH) and len(layer.output.shape) == 4]


def layers_at_depths(model, fractions=(0.25, 0.5, 0.9)) -> list[str]:
    """Layers with feature maps at these fractions of the network's depth: the same question for
    any architecture, whatever its layers are named (a network you wrote names them itself)."""
    names = spatial_layers(model)
    return [names[min(len(names) - 1, int(f * len(names)))] for f in fractions]


def last_conv_layer(model) -> str:
    """The name of the last layer with feature maps: where Grad-CAM looks."""
    names = spatial_layers(model)
    if not names:
        raise ValueError(f"{model.name} has no layer with a spatial output")
    return names[-1]


def _classes(model, images, class_index):
    """The class to explain for each image: given, or the predicted one."""
    if class_index is None:
        return np.argmax(model.predict(images, verbose=0), axis=-1)
    return np.broadcast_to(np.asarray(class_index), (len(images),))


def _class_scores(probabilities, classes):
    """The score of each image's class: its log-probability (a softmax output's logit up to a
    constant shared by all classes)."""
    picked = ops.take_along_axis(probabilities, ops.convert_to_tensor(classes[:, None].astype("int32")), axis=1)
    return ops.log(ops.maximum(picked, 1e-12))


def activation_maximization(model, layer: str, channel: int, size: int | None = None, steps: int = 80,
                            step_size: float = 0.05, l2: float = 1e-3, jitter: int = 4, blur_every: int = 8,
                            seed: int = 0):
    """The input that maximises channel ``channel`` of ``layer``'s output (averaged over the map),
    by gradient ascent from grey noise: normalised gradient steps of ``step_size``, an L2 pull
    towards grey (``l2``), random shifts of up to ``jitter`` pixels and a light blur every
    ``blur_every`` steps (regularisers that keep the image from turning to high-frequency noise;
    Yosinski et al. 2015). Returns ``(image, activations)``: the image (H, W, 3) in [0, 1] and the
    mean activation before each step and after the last."""
    front, net = unwrap(model)
    target = _sub_model(net, layer)
    if not 0 <= channel < int(target.output.shape[-1]):
        raise ValueError(f"{layer} has {int(target.output.shape[-1])} channels; channel {channel} does not exist")
    side = size or int(model.inputs[0].shape[1])
    rng = np.random.default_rng(seed)
    # grey with some noise (as keras.io's "Visualizing what convnets learn"): enough variety that a
    # channel behind a ReLU is active somewhere, so that its gradient is not zero everywhere
    image = (0.5 + 0.25 * (rng.random((1, side, side, 3)) - 0.5)).astype("float32")

    def objective(x):
        return ops.mean(target(front(x), training=False)[..., channel])

    trace = []
    for step in range(steps):
        shift = rng.integers(-jitter, jitter + 1, size=2) if jitter else (0, 0)
        moved = np.roll(image, tuple(shift), axis=(1, 2))
        value, grad = input_gradient(objective, moved)
        trace.append(value)
        grad = np.roll(grad, tuple(-shift), axis=(1, 2))
        image = image + step_size * grad / (grad.std() + 1e-8) - l2 * (image - 0.5)
        if blur_every and (step + 1) % blur_every == 0:
            image = _blur(image)
        image = np.clip(image, 0.0, 1.0)
    trace.append(float(keras.ops.convert_to_numpy(ops.cast(objective(image), "float32"))))
    return image[0], np.asarray(trace)


def _blur(image):
    """A 3x3 binomial blur of a batch of images (edge pixels repeated)."""
    padded = np.pad(image, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    kernel = np.array([1.0, 2.0, 1.0]) / 4.0
    rows = sum(k * padded[:, i:i + image.shape[1], :, :] for i, k in enumerate(kernel))
    return sum(k * rows[:, :, i:i + image.shape[2], :] for i, k in enumerate(kernel)).astype("float32")


def saliency(model, images, class_index=None):
    """Simonyan, Vedaldi & Zisserman (2014): how much each pixel changes the class score, the
    largest absolute gradient over its three channels. ``class_index``: the class to explain
    (default: the predicted one). Returns ``(N, H, W)``, each map scaled to [0, 1]."""
    images = np.asarray(images, dtype="float32")
    classes = _classes(model, images, class_index)
    _, grad = input_gradient(lambda x: _class_scores(model(x, training=False), classes), images)
    maps = np.abs(grad).max(axis=-1)
    return maps / np.maximum(maps.max(axis=(1, 2), keepdims=True), 1e-12)


def grad_cam(model, images, layer: str | None = None, class_index=None):
    """Selvaraju et al. (2017): the feature maps of ``layer`` (default: the last spatial one),
    weighted by the mean gradient of the class score over each map, summed, ReLU'd, upsampled to
    the image. Returns ``(N, H, W)`` in [0, 1]."""
    images = np.asarray(images, dtype="float32")
    layer = layer or last_conv_layer(model)
    front, net = unwrap(model)
    cut = net.get_layer(layer).output
    body, head = keras.Model(net.inputs, cut), keras.Model(cut, net.outputs)
    classes = _classes(model, images, class_index)
    maps = keras.ops.convert_to_numpy(ops.cast(body(front(images), training=False), "float32"))
    _, grad = input_gradient(lambda m: _class_scores(head(m, training=False), classes), maps)
    weights = grad.mean(axis=(1, 2), keepdims=True)
    cam = np.maximum((weights * maps).sum(axis=-1), 0.0)[..., None]
    cam = keras.ops.convert_to_numpy(ops.image.resize(cam, images.shape[1:3], interpolation="bilinear"))[..., 0]
    return cam / np.maximum(cam.max(axis=(1, 2), keepdims=True), 1e-12)


def occlusion(model, image, class_index=None, patch: int | None = None, stride: int | None = None,
              fill: float = 0.5, batch_size: int = 32):
    """Zeiler & Fergus (2014): slide a grey ``patch`` over ``image`` (H, W, 3) with ``stride`` and
    record the probability of the class at each position. Returns ``(drop, probability)``: the
    unoccluded probability, and for each pixel the drop from it when the patch centred nearest
    to that pixel hides its surroundings, ``(H, W)``."""
    image = np.asarray(image, dtype="float32")
    h, w = image.shape[:2]
    patch = patch or max(4, h // 6)
    stride = stride or max(1, patch // 2)
    cls = int(_classes(model, image[None], class_index)[0])
    base = float(model.predict(image[None], verbose=0)[0, cls])
    tops, lefts = np.arange(0, h - patch + 1, stride), np.arange(0, w - patch + 1, stride)
    views = np.repeat(image[None], len(tops) * len(lefts), axis=0)
    for k, (top, left) in enumerate((t, l) for t in tops for l in lefts):
        views[k, top:top + patch, left:left + patch] = fill
    probs = model.predict(views, batch_size=batch_size, verbose=0)[:, cls]
    grid = (base - probs).reshape(len(tops), len(lefts))

    def nearest(size, starts):  # each pixel -> the patch whose centre is nearest to it
        return np.clip(np.round((np.arange(size) + 0.5 - patch / 2) / stride), 0, len(starts) - 1).astype(int)

    return grid[nearest(h, tops)][:, nearest(w, lefts)].astype("float32"), base


def penultimate_layer(model) -> str:
    """The layer whose output feeds the classifier: the global average pool (or, for VGG and
    AlexNet, the last fully connected layer before the classifier)."""
    _, net = unwrap(model)
    for layer in reversed(net.layers):
        if isinstance(layer, (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)):
            return layer.name
    dense = [layer.name for layer in net.layers if isinstance(layer, keras.layers.Dense)]
    if len(dense) >= 2:
        return dense[-2]
    raise ValueError(f"{model.name}: no global pooling and no second-to-last dense layer; name the layer")


def features(model, images, layer: str | None = None, batch_size: int = 64) -> np.ndarray:
    """The vectors the classifier sees (``layer``, default ``penultimate_layer``) for ``images``
    (an array in [0, 1]), one row per image."""
    front, net = unwrap(model)
    extractor = _sub_model(net, layer or penultimate_layer(model))
    images = np.asarray(images, dtype="float32")
    out = np.concatenate([keras.ops.convert_to_numpy(extractor(front(images[i:i + batch_size]), training=False))
                          for i in range(0, len(images), batch_size)])
    return out.reshape(len(out), -1).astype("float32")   # also from a bfloat16 network


def embed_2d(vectors, method: str = "tsne", seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """Two coordinates per vector: t-SNE (van der Maaten & Hinton 2008) or PCA, from scikit-learn."""
    vectors = np.asarray(vectors, dtype="float64")
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(2, random_state=seed).fit_transform(vectors)
    if method != "tsne":
        raise ValueError(f"method must be 'tsne' or 'pca', got {method!r}")
    from sklearn.manifold import TSNE

    return TSNE(2, perplexity=min(perplexity, (len(vectors) - 1) / 3), init="pca",
                random_state=seed).fit_transform(vectors)


def nearest_neighbours(vectors, queries, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """For each query vector, the ``k`` rows of ``vectors`` nearest by cosine distance:
    ``(indices, distances)``, each ``(queries, k)``, nearest first (scikit-learn)."""
    from sklearn.neighbors import NearestNeighbors

    finder = NearestNeighbors(n_neighbors=k, metric="cosine").fit(np.asarray(vectors, dtype="float32"))
    distances, indices = finder.kneighbors(np.atleast_2d(np.asarray(queries, dtype="float32")))
    return indices, distances
