"""Data augmentation: showing the network more variety than the 680 training images hold.

AlexNet (section 4.1) enlarged its training set with random 224x224 crops of the 256x256 images
and their horizontal reflections, and by altering RGB intensities (PCA colour augmentation).
Here: a pipeline of Keras layers that runs *inside the model*, so on the accelerator, and only
while training (the layers pass images through unchanged at inference). Every layer in it
compiles (XLA, ``jax.jit``, ``torch.compile``): Keras' flip, contrast and brightness layers, and
labkit's ``RandomAffine`` for rotation, zoom and translation in one resampling
(``labkit.augment_layers``; Keras' own geometric layers switch XLA off).
"""
from __future__ import annotations

import keras

from labkit.augment_layers import RandomAffine, affine_warp  # noqa: F401  (public here too)

# strength per profile: how far each random transformation may go
STRENGTHS = {
    "none": None,
    "light": dict(rotation=0.03, zoom=0.10, translation=0.05, contrast=0.10, brightness=0.10),
    "standard": dict(rotation=0.08, zoom=0.20, translation=0.10, contrast=0.20, brightness=0.15),
    "strong": dict(rotation=0.15, zoom=0.30, translation=0.15, contrast=0.30, brightness=0.25),
}


def _strength(strength: str):
    if strength not in STRENGTHS:
        raise ValueError(f"augmentation strength must be one of {', '.join(STRENGTHS)}, got {strength!r}")
    return STRENGTHS[strength]


def augmentation_layers(strength: str = "standard", seed: int | None = None) -> dict:
    """Each transformation of ``keras_augmentation`` as a layer of its own, by name (``flip``,
    ``rotation``, ``zoom``, ``translation``, ``contrast``, ``brightness``): to look at them one
    at a time. ``none`` gives an empty dict. Expects images in [0, 1]."""
    s = _strength(strength)
    if s is None:
        return {}
    L = keras.layers

    def f32(k):  # float32 under mixed precision too (bfloat16 warps are slower on CPUs); each
        # layer its own seed, so that one layer's draws do not repeat another's
        return dict(seed=None if seed is None else seed + k, dtype="float32")

    return {
        "flip": L.RandomFlip("horizontal", name="flip", **f32(0)),
        "rotation": RandomAffine(rotation=s["rotation"], name="rotation", **f32(1)),
        "zoom": RandomAffine(zoom=s["zoom"], name="zoom", **f32(2)),
        "translation": RandomAffine(translation=s["translation"], name="translation", **f32(3)),
        "contrast": L.RandomContrast(s["contrast"], value_range=(0, 1), name="contrast", **f32(4)),
        "brightness": L.RandomBrightness(s["brightness"], value_range=(0, 1), name="brightness", **f32(5)),
    }


def keras_augmentation(strength: str = "standard", seed: int | None = None, name: str = "augmentation"):
    """A ``keras.Sequential``: random horizontal flip; rotation, zoom and translation in one
    resampling (``RandomAffine``, layer ``geometry``); contrast; brightness.

    Expects images with values in [0, 1] and keeps them there. ``strength`` is one of ``none``,
    ``light``, ``standard``, ``strong``; ``none`` returns ``None``. The same ``seed`` gives the
    same augmentations.
    """
    s = _strength(strength)
    if s is None:
        return None
    single = augmentation_layers(strength, seed)
    geometry = RandomAffine(s["rotation"], s["zoom"], s["translation"], name="geometry",
                            seed=None if seed is None else seed + 1, dtype="float32")
    return keras.Sequential([single["flip"], geometry, single["contrast"], single["brightness"]], name=name)


def ten_crops(images, crop_size: int):
    """AlexNet's test-time views (section 4.1): the four corner and the central
    ``crop_size`` patches, and their horizontal reflections.

    ``images``: a batch ``(B, H, W, C)`` with H, W >= crop_size. Returns ``(10, B, crop, crop, C)``
    in the order top-left, top-right, bottom-left, bottom-right, centre, then the same mirrored.
    """
    from keras import ops

    images = ops.convert_to_tensor(images)
    h, w = int(images.shape[1]), int(images.shape[2])
    c = crop_size
    if c > min(h, w):
        raise ValueError(f"crop_size {c} is larger than the images ({h}x{w})")
    offsets = [(0, 0), (0, w - c), (h - c, 0), (h - c, w - c), ((h - c) // 2, (w - c) // 2)]
    crops = [images[:, y:y + c, x:x + c, :] for y, x in offsets]
    crops += [ops.flip(v, axis=2) for v in crops]
    return ops.stack(crops)


# --------------------------------------------------------------------------- by hand
# Readable NumPy versions of AlexNet's two augmentations (section 4.1). Each takes a seed or a
# numpy Generator, keeps labels untouched, returns the input's dtype, and keeps values in range.

def _rng(seed) -> "np.random.Generator":
    import numpy as np

    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def random_crop_and_flip(images, crop_size: int, seed=0):
    """AlexNet's first augmentation: a random ``crop_size`` square from each image (224 of 256 in
    the paper), mirrored left-right with probability 1/2. ``images``: ``(N, H, W, C)``."""
    import numpy as np

    images = np.asarray(images)
    n, h, w, _ = images.shape
    if crop_size > min(h, w):
        raise ValueError(f"crop_size {crop_size} is larger than the images ({h}x{w})")
    rng = _rng(seed)
    out = np.empty((n, crop_size, crop_size, images.shape[-1]), dtype=images.dtype)
    for i in range(n):
        top = rng.integers(0, h - crop_size + 1)          # any position where the crop fits
        left = rng.integers(0, w - crop_size + 1)
        crop = images[i, top:top + crop_size, left:left + crop_size]
        if rng.random() < 0.5:                            # horizontal reflection
            crop = crop[:, ::-1]
        out[i] = crop
    return out


def rgb_pca(images):
    """Eigenvalues (largest first) and eigenvectors (columns) of the RGB covariance over all
    pixels of ``images`` (values in [0, 1], or uint8 scaled to [0, 1]): AlexNet's PCA."""
    import numpy as np

    images = np.asarray(images)
    pixels = images.reshape(-1, 3).astype(np.float64)
    if images.dtype == np.uint8:
        pixels /= 255.0
    covariance = np.cov(pixels, rowvar=False)             # 3x3
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    return eigenvalues[order], eigenvectors[:, order]


def pca_color_augment(images, eigenvalues, eigenvectors, std: float = 0.1, seed=0):
    """AlexNet's second augmentation: add ``[p1 p2 p3] [a1 l1, a2 l2, a3 l3]^T`` to every pixel of
    an image, with ``a_i ~ N(0, std)`` drawn once per image. It shifts the colour along the
    directions in which natural colours vary, as the light does, and leaves the label alone."""
    import numpy as np

    images = np.asarray(images)
    rng = _rng(seed)
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    alphas = rng.normal(0.0, std, size=(len(images), 3))
    shifts = (alphas * eigenvalues) @ np.asarray(eigenvectors).T   # (N, 3): one RGB shift per image
    out = images.astype(np.float64) + scale * shifts[:, None, None, :]
    out = np.clip(out, 0, scale)
    return np.round(out).astype(np.uint8) if images.dtype == np.uint8 else out.astype(images.dtype)


def enlarge(images, labels, copies: int, crop_size: int, seed=0, pca=None, out_dir=None):
    """Grow a training set by hand: ``copies`` augmented versions of every image (random crop and
    flip, then PCA colour noise when ``pca=(eigenvalues, eigenvectors)`` is given).

    Returns ``(images, labels)`` in memory, originals first (centre-cropped), or, with ``out_dir``,
    writes ``out_dir/<label>/<index>_<copy>.png`` and returns the list of written paths.
    """
    import numpy as np

    images, labels = np.asarray(images), np.asarray(labels)
    if copies < 0 or int(copies) != copies:
        raise ValueError(f"copies must be a whole number >= 0, got {copies!r}")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    rng = _rng(seed)
    h, w = images.shape[1:3]
    top, left = (h - crop_size) // 2, (w - crop_size) // 2
    sets = [images[:, top:top + crop_size, left:left + crop_size]]
    for _ in range(copies):
        batch = random_crop_and_flip(images, crop_size, rng)
        if pca is not None:
            batch = pca_color_augment(batch, *pca, seed=rng)
        sets.append(batch)
    all_images = np.concatenate(sets)
    all_labels = np.tile(labels, copies + 1)
    if out_dir is None:
        return all_images, all_labels
    from pathlib import Path

    from PIL import Image

    out = Path(out_dir)
    written = []
    for k, (image, label) in enumerate(zip(all_images, all_labels)):
        folder = out / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        array = image if image.dtype == np.uint8 else np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
        path = folder / f"{k % len(images):05d}_{k // len(images)}.png"
        Image.fromarray(array).save(path)
        written.append(path)
    return written
