"""Decoding OxFlower17's JPEGs once, ever: shorter side to the input size, central square, uint8.

Two decoders give the same geometry: TensorFlow's (``tf.io.decode_jpeg`` with libjpeg's
DCT-domain downscaling, then an antialiased bilinear resize), used whenever TensorFlow is
installed, and Pillow's (``Image.draft``, the same DCT downscaling, then its antialiased
bilinear resize) on machines without TensorFlow. Their pixels differ slightly, so the disk cache
is kept per decoder and a model never sees a mixture.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from labkit import places
from labkit.backend import has_tensorflow
from labkit.data.files import NUM_IMAGES, READY_MARKER, _announce, ensure_images

CACHE_VERSION = 1
DECODERS = ("tf", "pil")
_decoded: dict[Path, np.ndarray] = {}


def default_decoder() -> str:
    """``tf`` when TensorFlow is installed (the decoder every measured result used), else ``pil``."""
    return "tf" if has_tensorflow() else "pil"


def decode_and_resize(jpeg_bytes, image_size: int):
    """Decode a JPEG with TensorFlow, scale its shorter side to ``image_size`` and take the
    central square.

    This is AlexNet's test-time preprocessing (shorter side to 256, central 256x256), at any size.
    Large reductions use libjpeg's DCT-domain downscaling (``ratio`` 2, 4 or 8) first, which is
    several times faster than decoding full size and a clean low-pass downscale.
    Returns ``uint8`` ``(image_size, image_size, 3)``.
    """
    import tensorflow as tf

    shape = tf.io.extract_jpeg_shape(jpeg_bytes)
    short = tf.minimum(shape[0], shape[1])

    def decode(ratio):
        return lambda: tf.io.decode_jpeg(jpeg_bytes, channels=3, ratio=ratio)

    image = tf.case(
        [(short >= 8 * image_size, decode(8)), (short >= 4 * image_size, decode(4)),
         (short >= 2 * image_size, decode(2))],
        default=decode(1),
    )
    h = tf.cast(tf.shape(image)[0], tf.float32)
    w = tf.cast(tf.shape(image)[1], tf.float32)
    scale = image_size / tf.minimum(h, w)
    new_h = tf.maximum(image_size, tf.cast(tf.round(h * scale), tf.int32))
    new_w = tf.maximum(image_size, tf.cast(tf.round(w * scale), tf.int32))
    image = tf.image.resize(image, [new_h, new_w], method="bilinear", antialias=True)
    top = (new_h - image_size) // 2
    left = (new_w - image_size) // 2
    image = image[top:top + image_size, left:left + image_size, :]
    image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    return tf.ensure_shape(image, [image_size, image_size, 3])


def decode_and_resize_pil(path, image_size: int) -> np.ndarray:
    """``decode_and_resize`` with Pillow: DCT-domain downscaling (``draft``), antialiased bilinear
    resize of the shorter side to ``image_size``, central square. ``uint8 (S, S, 3)``."""
    from PIL import Image

    with Image.open(path) as img:
        w, h = img.size
        short = min(w, h)
        ratio = next((r for r in (8, 4, 2) if short >= r * image_size), 1)
        if ratio > 1:  # libjpeg decodes at 1/ratio directly, as tf.io.decode_jpeg(ratio=...) does
            img.draft("RGB", (w // ratio, h // ratio))
        img = img.convert("RGB")
        w, h = img.size
        scale = image_size / min(w, h)
        new_w, new_h = max(image_size, round(w * scale)), max(image_size, round(h * scale))
        img = img.resize((new_w, new_h), Image.BILINEAR)  # Pillow widens the filter: antialiased
        top, left = (new_h - image_size) // 2, (new_w - image_size) // 2
        return np.asarray(img.crop((left, top, left + image_size, top + image_size)), dtype=np.uint8)


def decode_all(images_dir: Path, image_size: int, decoder: str | None = None) -> np.ndarray:
    """Decode every image: ``(1360, S, S, 3)`` uint8, row ``image_id - 1``."""
    decoder = decoder or default_decoder()
    paths = [str(images_dir / f"image_{i:04d}.jpg") for i in range(1, NUM_IMAGES + 1)]
    if decoder == "pil":
        from concurrent.futures import ThreadPoolExecutor  # Pillow releases the GIL while decoding

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            return np.stack(list(pool.map(lambda p: decode_and_resize_pil(p, image_size), paths)))
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(paths).map(
        lambda p: decode_and_resize(tf.io.read_file(p), image_size),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(64)
    return np.concatenate([batch.numpy() for batch in ds])


def cache_path(images_dir: Path, image_size: int, decoder: str) -> Path:
    """``<cache>/oxflower17-<S>px-v<N>-<archive>[-pil].npy``, where ``<cache>`` is ``$LABKIT_CACHE_DIR``
    or ``<data_dir>/cache`` (``labkit.places``): the archive's checksum and
    the decoder are part of the name, so neither a replaced archive nor another decoder's pixels
    can be read back by mistake. (TensorFlow's cache keeps its original name.)"""
    stamp = (images_dir.parent / READY_MARKER).read_text()
    tag = hashlib.md5(stamp.encode()).hexdigest()[:8]
    suffix = "" if decoder == "tf" else f"-{decoder}"
    return places.cache_dir(images_dir.parent.parent) / f"oxflower17-{int(image_size)}px-v{CACHE_VERSION}-{tag}{suffix}.npy"


def decoded_images(image_size: int, data_dir=None, download: bool | None = None,
                   decoder: str | None = None) -> np.ndarray:
    """All 1,360 images decoded at ``image_size`` (uint8, row = image_id - 1), from a disk cache.

    The first call for a size decodes the JPEGs and saves them in the cache folder (``cache_path``)
    (written to a temporary name, then renamed: never half a file); every later call, in any
    process, loads it in a fraction of a second. The name carries the archive's checksum and the
    decoder (``tf`` or ``pil``, default: ``tf`` when TensorFlow is installed), so a replaced
    archive or another decoder never meets a stale cache; a damaged cache file is rebuilt.
    """
    decoder = decoder or default_decoder()
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}.")
    if decoder == "tf" and not has_tensorflow():
        raise ValueError("decoder 'tf' needs TensorFlow, which is not installed; use decoder='pil'.")
    images_dir = ensure_images(data_dir, download=download)
    path = cache_path(images_dir, image_size, decoder)
    if path in _decoded:
        return _decoded[path]
    expected = (NUM_IMAGES, int(image_size), int(image_size), 3)
    images = None
    if path.is_file():
        try:
            images = np.load(path)
            if images.shape != expected or images.dtype != np.uint8:
                images = None
        except (OSError, ValueError):  # damaged: it is derived data, so rebuild it
            images = None
        if images is None:
            _announce(f"cache-bad-{path}", f"{path} is damaged; decoding the images again.")
    if images is None:
        images = decode_all(images_dir, int(image_size), decoder)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, images)
            os.replace(tmp, path)
        except OSError as err:
            _announce("cache-unwritable", f"could not save decoded images to {path} ({err}); "
                                          "they are kept in memory for this session only.")
    _decoded[path] = images
    return images
