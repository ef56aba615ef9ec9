"""labkit.augment: seeded, label-preserving, shape/dtype/range-preserving augmentation."""
import numpy as np
from keras.ops import convert_to_numpy as to_numpy
import pytest

from labkit import augment


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(6, 20, 24, 3), dtype=np.uint8)


def is_window_of(crop, image):
    """True when ``crop`` is a window of ``image`` or of its mirror image."""
    c = crop.shape[0]
    for source in (image, image[:, ::-1]):
        for top in range(image.shape[0] - c + 1):
            for left in range(image.shape[1] - c + 1):
                if np.array_equal(source[top:top + c, left:left + c], crop):
                    return True
    return False


def test_random_crop_and_flip_is_seeded_and_takes_real_windows(images):
    a = augment.random_crop_and_flip(images, 16, seed=3)
    b = augment.random_crop_and_flip(images, 16, seed=3)
    c = augment.random_crop_and_flip(images, 16, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == (6, 16, 16, 3) and a.dtype == np.uint8
    assert all(is_window_of(crop, image) for crop, image in zip(a, images))
    floats = augment.random_crop_and_flip(images / 255.0, 16, seed=3)
    assert floats.dtype == np.float64 and np.allclose(floats * 255, a)
    with pytest.raises(ValueError, match="larger than the images"):
        augment.random_crop_and_flip(images, 21)


def test_flips_happen_about_half_the_time():
    image = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(1, 8, 8, 3).repeat(400, axis=0)
    crops = augment.random_crop_and_flip(image, 8, seed=0)  # full-size crop: only the flip varies
    flipped = np.mean([not np.array_equal(c, image[0]) for c in crops])
    assert 0.4 < flipped < 0.6


def test_pca_recovers_a_known_colour_covariance():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))         # known eigenvectors
    eigenvalues = np.array([0.02, 0.005, 0.001])
    covariance = q @ np.diag(eigenvalues) @ q.T
    pixels = rng.multivariate_normal([0.5, 0.5, 0.5], covariance, size=40_000)
    images = np.clip(pixels, 0, 1).reshape(100, 20, 20, 3)
    values, vectors = augment.rgb_pca(images)
    np.testing.assert_allclose(values, eigenvalues, rtol=0.08)
    for i in range(3):
        assert abs(vectors[:, i] @ q[:, i]) > 0.99      # same direction up to sign


def test_pca_colour_augment_shifts_along_the_eigenvectors_and_stays_in_range(images):
    values, vectors = augment.rgb_pca(images)
    out = augment.pca_color_augment(images, values, vectors, std=0.1, seed=5)
    again = augment.pca_color_augment(images, values, vectors, std=0.1, seed=5)
    assert np.array_equal(out, again) and out.dtype == np.uint8 and out.shape == images.shape
    assert out.min() >= 0 and out.max() <= 255
    floats = np.full((2, 4, 4, 3), 0.5)
    shifted = augment.pca_color_augment(floats, np.array([1.0, 0, 0]), np.eye(3), std=0.1, seed=0)
    shift = shifted[:, 0, 0] - 0.5
    assert np.allclose(shifted, shifted[:, :1, :1])       # one shift for the whole image
    assert np.allclose(shift[:, 1:], 0) and not np.allclose(shift[:, 0], 0)  # along eigenvector 1 only
    assert 0 <= shifted.min() and shifted.max() <= 1


def test_enlarge_produces_the_requested_count_in_memory_and_on_disk(images, tmp_path):
    labels = np.array([0, 1, 2, 0, 1, 2])
    pca = augment.rgb_pca(images)
    big, big_labels = augment.enlarge(images, labels, copies=3, crop_size=16, seed=0, pca=pca)
    assert big.shape == (24, 16, 16, 3) and big.dtype == np.uint8
    assert list(big_labels) == list(labels) * 4          # labels unchanged, in order
    again, _ = augment.enlarge(images, labels, copies=3, crop_size=16, seed=0, pca=pca)
    assert np.array_equal(big, again)
    paths = augment.enlarge(images, labels, copies=2, crop_size=16, seed=0, out_dir=tmp_path)
    assert len(paths) == 18 and all(p.is_file() for p in paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0", "1", "2"]
    assert len(list((tmp_path / "1").iterdir())) == 6
    with pytest.raises(ValueError, match="copies"):
        augment.enlarge(images, labels, copies=-1, crop_size=16)
    with pytest.raises(ValueError, match="labels"):
        augment.enlarge(images, labels[:3], copies=1, crop_size=16)


def test_keras_pipeline_is_seeded_keeps_range_and_is_off_at_inference():
    x = np.random.default_rng(0).random((4, 32, 32, 3)).astype("float32")
    a = to_numpy(augment.keras_augmentation("strong", seed=7)(x, training=True))
    b = to_numpy(augment.keras_augmentation("strong", seed=7)(x, training=True))
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert a.shape == x.shape and a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
    assert not np.allclose(a, x)
    np.testing.assert_array_equal(to_numpy(augment.keras_augmentation("strong", seed=7)(x, training=False)), x)
    assert augment.keras_augmentation("none") is None
    with pytest.raises(ValueError, match="strength must be one of"):
        augment.keras_augmentation("extreme")


# --------------------------------------------------------------------------- layers that compile

def warp(images, angle=0.0, scale=1.0, shift_y=0.0, shift_x=0.0, fill_mode="reflect"):
    n = len(images)
    return to_numpy(augment.affine_warp(images, np.full(n, angle), np.full(n, scale), np.full(n, shift_y),
                                        np.full(n, shift_x), fill_mode))


def test_affine_warp_is_exact_on_the_pixel_grid():
    img = np.random.default_rng(1).random((2, 9, 9, 3)).astype("float32")
    np.testing.assert_array_equal(warp(img), img)                                   # identity
    np.testing.assert_allclose(warp(img, angle=np.pi / 2), np.rot90(img, k=1, axes=(1, 2)), atol=1e-5)
    np.testing.assert_array_equal(warp(img, shift_x=2)[:, :, 2:], img[:, :, :-2])    # moved 2 px right
    # reflect: the two columns that came in are the mirror image of the edge (b a | a b c ...)
    np.testing.assert_array_equal(warp(img, shift_x=2)[:, :, :2], img[:, :, 1::-1])
    np.testing.assert_array_equal(warp(img, shift_x=2, fill_mode="nearest")[:, :, :2],
                                  np.repeat(img[:, :, :1], 2, axis=2))


def test_affine_zoom_magnifies_the_centre_bilinearly():
    ramp = np.tile(np.arange(9, dtype="float32"), (1, 9, 1))[..., None]             # value = column
    out = warp(ramp, scale=0.5)                                                      # 2x zoom in
    np.testing.assert_allclose(out[0, 4, :, 0], 4 + (np.arange(9) - 4) * 0.5)           # half-pixel steps
    with pytest.raises(ValueError, match="fill_mode"):
        warp(ramp, fill_mode="wrap")


def test_random_affine_is_seeded_in_range_and_off_at_inference():
    x = np.random.default_rng(0).random((4, 16, 16, 3)).astype("float32")
    layer = augment.RandomAffine(0.1, 0.2, 0.1, seed=3)
    a, b = to_numpy(layer(x)), to_numpy(augment.RandomAffine(0.1, 0.2, 0.1, seed=3)(x))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, to_numpy(layer(x)))                       # a new draw each call
    assert a.min() >= x.min() - 1e-6 and a.max() <= x.max() + 1e-6      # bilinear: a blend of pixels
    np.testing.assert_array_equal(to_numpy(layer(x, training=False)), x)
    restored = augment.RandomAffine.from_config(layer.get_config())
    assert (restored.rotation, restored.zoom, restored.translation) == (0.1, 0.2, 0.1)
    with pytest.raises(ValueError, match="zoom"):
        augment.RandomAffine(zoom=1.5)


def test_every_augmentation_layer_supports_jit():
    for strength in ("light", "standard", "strong"):
        pipeline = augment.keras_augmentation(strength, seed=0)
        assert all(layer.supports_jit for layer in pipeline.layers)
        assert [l.name for l in pipeline.layers] == ["flip", "geometry", "contrast", "brightness"]
    single = augment.augmentation_layers("standard", seed=0)
    assert list(single) == ["flip", "rotation", "zoom", "translation", "contrast", "brightness"]
    assert all(layer.supports_jit for layer in single.values())
    assert augment.augmentation_layers("none") == {}
