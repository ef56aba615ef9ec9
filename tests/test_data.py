"""labkit.data: download, verification, safe extraction, splits, index and tf.data pipeline."""
import hashlib
import io
import os
import signal
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

import labkit.data as data
from labkit.data import files
from conftest import make_jpeg, write_tgz


def leftovers(root: Path) -> list[str]:
    """Anything extraction might have left half-done: the target or a temporary folder."""
    return sorted(p.name for p in root.iterdir() if p.name.startswith((".oxflower17", "oxflower17")))


# --------------------------------------------------------------------------- constants

def test_class_names_and_labels_follow_the_official_order():
    assert len(data.CLASS_NAMES) == 17
    assert data.CLASS_NAMES[0] == "daffodil" and data.CLASS_NAMES[-1] == "pansy"
    assert data.CLASS_NAMES[11] == "colt's foot"
    assert data.label_of(1) == 0 and data.label_of(80) == 0 and data.label_of(81) == 1
    assert data.label_of(1360) == 16
    with pytest.raises(ValueError, match="1 to 1360"):
        data.label_of(1361)


# --------------------------------------------------------------------------- synthetic archive

def test_synthetic_archive_with_official_splits(synthetic_data_dir):
    rng = np.random.default_rng(7)
    mat = {}
    for k in (1, 2, 3):
        ids = rng.permutation(1360) + 1
        mat[f"trn{k}"], mat[f"val{k}"], mat[f"tst{k}"] = ids[:680], ids[680:1020], ids[1020:]
    savemat(synthetic_data_dir / "datasplits.mat", {k: v.reshape(1, -1).astype(float) for k, v in mat.items()})

    index = data.oxflower17_index(synthetic_data_dir, partition=2)
    assert index.attrs["split_name"] == "official datasplits.mat partition 2"
    assert len(index) == 1360
    assert sorted(index.loc[index.split == "val", "image_id"]) == sorted(mat["val2"].tolist())
    assert index.loc[index.image_id == 81, "label"].item() == 1
    assert index.loc[index.image_id == 81, "class_name"].item() == "snowdrop"
    assert Path(index.path[0]).is_file()


def test_fallback_split_is_announced_and_stratified(synthetic_data_dir, capsys):
    files._announced.discard("splits-fallback")
    index = data.oxflower17_index(synthetic_data_dir, partition=1)
    assert "labkit-stratified" in index.attrs["split_name"]
    assert "datasplits.mat is not in" in capsys.readouterr().out
    counts = index.groupby(["split", "label"]).size().unstack()
    assert (counts.loc["train"] == 40).all() and (counts.loc["val"] == 20).all() and (counts.loc["test"] == 20).all()
    # deterministic, and the three partitions differ
    again = data.fallback_splits(1)
    assert all(np.array_equal(again[s], index.loc[index.split == s, "image_id"].to_numpy()) for s in again)
    assert not np.array_equal(data.fallback_splits(2)["test"], again["test"])


def test_bad_partition_and_bad_splits_file(synthetic_data_dir):
    with pytest.raises(ValueError, match="partitions 1, 2 and 3"):
        data.oxflower17_index(synthetic_data_dir, partition=4)
    savemat(synthetic_data_dir / "datasplits.mat", {"trn1": np.arange(1, 11), "val1": np.arange(11, 21), "tst1": np.arange(21, 31)})
    with pytest.raises(data.DataError, match="should hold 680 image ids"):
        data.oxflower17_index(synthetic_data_dir, partition=1)


def test_missing_archive_offline_names_the_file_and_folder(tmp_path):
    with pytest.raises(data.DataError) as err:
        data.ensure_images(tmp_path, download=False)
    message = str(err.value)
    assert "17flowers.tgz" in message and str(tmp_path) in message and "offline" in message


def test_unofficial_archive_with_wrong_contents_is_rejected(tmp_path):
    write_tgz(tmp_path / "17flowers.tgz", {f"jpg/image_{i:04d}.jpg": make_jpeg(i) for i in range(1, 100)})
    with pytest.raises(data.DataError, match="1,261 missing"):
        data.ensure_images(tmp_path)
    assert leftovers(tmp_path) == []
    assert (tmp_path / "17flowers.tgz").is_file()  # the user's file is never deleted


def test_unreadable_jpeg_in_unofficial_archive_is_named(tmp_path):
    files = {f"jpg/image_{i:04d}.jpg": make_jpeg(i) for i in range(1, 1361)}
    files["jpg/image_0500.jpg"] = b"\xff\xd8 this is not a jpeg"
    write_tgz(tmp_path / "17flowers.tgz", files)
    with pytest.raises(data.DataError, match="image_0500.jpg in .*17flowers.tgz is not a readable JPEG"):
        data.ensure_images(tmp_path)
    assert leftovers(tmp_path) == []


def test_path_traversal_member_is_refused_and_nothing_is_written(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    write_tgz(root / "17flowers.tgz", {"jpg/image_0001.jpg": make_jpeg(1), "../escaped.txt": b"gotcha"})
    with pytest.raises(data.DataError, match="unsafe path '../escaped.txt'"):
        data.ensure_images(root)
    assert not (tmp_path / "escaped.txt").exists()
    assert leftovers(root) == []


def test_absolute_and_symlink_members_are_refused(tmp_path):
    write_tgz(tmp_path / "17flowers.tgz", {"/tmp/abs.txt": b"x"})
    with pytest.raises(data.DataError, match="unsafe path"):
        data.ensure_images(tmp_path)
    with tarfile.open(tmp_path / "17flowers.tgz", "w:gz") as tar:
        link = tarfile.TarInfo("jpg/image_0001.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(data.DataError, match="link or special file"):
        data.ensure_images(tmp_path)
    assert leftovers(tmp_path) == []


def test_truncated_archive_leaves_no_half_extracted_directory(tmp_path, synthetic_archive):
    payload = synthetic_archive.read_bytes()
    (tmp_path / "17flowers.tgz").write_bytes(payload[: len(payload) // 2])
    with pytest.raises(data.DataError, match="truncated or corrupt"):
        data.ensure_images(tmp_path)
    assert leftovers(tmp_path) == []
    assert (tmp_path / "17flowers.tgz").stat().st_size == len(payload) // 2


def test_incomplete_extraction_folder_is_not_trusted(synthetic_data_dir):
    (synthetic_data_dir / "oxflower17" / "jpg").mkdir(parents=True)
    with pytest.raises(data.DataError, match="not a complete labkit extraction"):
        data.ensure_images(synthetic_data_dir)


def test_damaged_image_after_extraction_is_named(synthetic_data_dir):
    images = data.ensure_images(synthetic_data_dir)
    victim = images / "image_0042.jpg"
    victim.write_bytes(victim.read_bytes()[:40])  # truncated on disk later
    with pytest.raises(data.DataError, match="image_0042.jpg is not a complete JPEG"):
        data.oxflower17_index(synthetic_data_dir)


class FakeResponse(io.BytesIO):
    @property
    def headers(self):
        return {"Content-Length": str(len(self.getbuffer()))}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_download_verifies_checksum_and_keeps_nothing_on_mismatch(tmp_path, monkeypatch, synthetic_archive,
                                                                  capsys):
    payload = synthetic_archive.read_bytes()
    monkeypatch.setattr(files.urllib.request, "urlopen", lambda url, timeout: FakeResponse(payload))
    with pytest.raises(data.DataError, match="corrupt"):
        data.ensure_images(tmp_path, download=True)  # md5 differs from the official one
    assert sorted(os.listdir(tmp_path)) == []

    monkeypatch.setattr(files, "ARCHIVE_MD5", hashlib.md5(payload).hexdigest())
    images = data.ensure_images(tmp_path, download=True)
    assert (tmp_path / "17flowers.tgz").is_file() and not (tmp_path / "17flowers.tgz.part").exists()
    assert len(list(images.glob("image_*.jpg"))) == 1360
    assert "MB" in capsys.readouterr().out                      # the download shows its progress


def test_files_placed_by_hand_mean_no_network_access(synthetic_data_dir, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("labkit went online although the archive was there")

    monkeypatch.setattr(files.urllib.request, "urlopen", no_network)
    index = data.oxflower17_index(synthetic_data_dir, download=True)  # downloads allowed, not needed
    assert len(index) == 1360 and "labkit-stratified" in index.attrs["split_name"]


def test_archive_download_brings_the_official_splits(tmp_path, monkeypatch, synthetic_archive):
    mat_path = tmp_path.parent / f"{tmp_path.name}-splits.mat"
    ids = np.random.default_rng(0).permutation(1360) + 1
    savemat(mat_path, {f"{k}{p}": v for p in (1, 2, 3)
                       for k, v in (("trn", ids[:680]), ("val", ids[680:1020]), ("tst", ids[1020:]))})
    payloads = {data.ARCHIVE_URL: synthetic_archive.read_bytes(), data.SPLITS_URL: mat_path.read_bytes()}
    monkeypatch.setattr(files.urllib.request, "urlopen", lambda url, timeout: FakeResponse(payloads[url]))
    monkeypatch.setattr(files, "ARCHIVE_MD5", hashlib.md5(payloads[data.ARCHIVE_URL]).hexdigest())
    monkeypatch.setattr(files, "SPLITS_MD5", hashlib.md5(payloads[data.SPLITS_URL]).hexdigest())
    index = data.oxflower17_index(tmp_path, download=True)
    assert index.attrs["split_name"] == "official datasplits.mat partition 1"
    assert sorted(index.loc[index.split == "test", "image_id"]) == sorted(ids[1020:].tolist())


def test_failed_download_says_what_to_do(tmp_path, monkeypatch):
    def refuse(url, timeout):
        raise files.urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(files.urllib.request, "urlopen", refuse)
    with pytest.raises(data.DataError, match="copy it to"):
        data.ensure_images(tmp_path, download=True)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- the real archive

def test_real_archive_index(real_data_dir):
    index = data.oxflower17_index(real_data_dir)
    assert len(index) == 1360
    assert (index.groupby("label").size() == 80).all()
    assert index.split.value_counts().to_dict() == {"train": 680, "val": 340, "test": 340}
    assert list(index.columns[:5]) == ["image_id", "path", "label", "class_name", "split"]
    sets = {s: set(index.loc[index.split == s, "image_id"]) for s in ("train", "val", "test")}
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"] or sets["val"] & sets["test"])
    assert (index.label == (index.image_id - 1) // 80).all()
    assert index.loc[index.image_id == 721, "class_name"].item() == "sunflower"
    assert index.attrs["partition"] == 1


def pipelines():
    """Both pipelines where TensorFlow is installed, the NumPy one alone elsewhere."""
    from labkit.backend import has_tensorflow

    return ["tf.data", "numpy"] if has_tensorflow() else ["numpy"]


@pytest.mark.parametrize("pipeline", pipelines())
def test_pipeline_shapes_dtypes_and_ranges(real_data_dir, pipeline):
    ds = data.oxflower17("val", image_size=48, batch_size=32, data_dir=real_data_dir, pipeline=pipeline)
    images, labels = next(iter(ds))
    images, labels = np.asarray(images), np.asarray(labels)
    assert images.shape == (32, 48, 48, 3) and images.dtype.name == "float32"
    assert labels.shape == (32,) and labels.dtype.name == "int32"
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    total = sum(int(y.shape[0]) for _, y in ds)
    assert total == 340

    raw = data.oxflower17("test", image_size=40, batch_size=7, data_dir=real_data_dir, dtype="uint8",
                          drop_remainder=True, pipeline=pipeline)
    x, _ = next(iter(raw))
    assert np.asarray(x).dtype.name == "uint8" and x.shape == (7, 40, 40, 3)
    assert sum(1 for _ in raw) == 340 // 7


@pytest.mark.parametrize("pipeline", pipelines())
def test_training_order_is_shuffled_and_seeded(real_data_dir, pipeline):
    def order(seed):
        ds = data.oxflower17("train", 16, 680, data_dir=real_data_dir, seed=seed, pipeline=pipeline)
        return np.asarray(next(iter(ds))[1])

    a, b, c = order(1), order(1), order(2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert sorted(a.tolist()) == sorted([l for l in range(17) for _ in range(40)])
    ordered = np.asarray(next(iter(data.oxflower17("test", 16, 340, data_dir=real_data_dir, pipeline=pipeline)))[1])
    assert np.all(np.diff(ordered) >= 0)  # evaluation splits keep the index order


def test_numpy_batches_reshuffle_every_epoch_and_repeat(real_data_dir):
    ds = data.oxflower17("train", 16, 100, data_dir=real_data_dir, seed=3, pipeline="numpy")
    assert isinstance(ds, data.ArrayBatches) and len(ds) == 7 and ds.num_batches == 7
    first = np.concatenate([np.asarray(y) for _, y in ds])
    ds.on_epoch_end()                                     # what Keras calls between epochs
    second = np.concatenate([np.asarray(y) for _, y in ds])
    assert len(first) == 680 and sorted(first) == sorted(second) and not np.array_equal(first, second)
    endless = ds.repeated()
    assert endless.num_batches is None and np.asarray(endless[7][1]).shape == (100,)   # batch 1 of the next epoch
    # Keras keeps counting an endless dataset's batches across its epochs: on_epoch_end must not skip a pass
    ahead = np.asarray(endless[8][1])
    endless.on_epoch_end()
    assert np.array_equal(np.asarray(endless[8][1]), ahead)
    doubled = ds.map(lambda x, y: (x, y * 2))
    assert np.array_equal(np.asarray(doubled[0][1]), np.asarray(ds[0][1]) * 2)
    assert len(ds.take(2)) == 2
    with pytest.raises(ValueError, match="pipeline"):
        data.oxflower17("train", 16, 8, data_dir=real_data_dir, pipeline="torch")


def test_large_batches_are_gathered_in_threads_in_the_same_order(monkeypatch):
    from labkit.data import pipeline

    images = np.random.default_rng(0).integers(0, 256, (50, 8, 8, 3), dtype=np.uint8)
    rows = np.random.default_rng(1).permutation(50)[:37]
    monkeypatch.setattr(pipeline, "GATHER_THREADS", 4)
    monkeypatch.setattr(pipeline, "GATHER_SPLIT_BYTES", 1000)   # 37 rows of 192 bytes: split in 4
    split = pipeline.gather_rows(images, rows)
    monkeypatch.setattr(pipeline, "GATHER_SPLIT_BYTES", 1 << 30)
    assert np.array_equal(split, images[rows]) and np.array_equal(pipeline.gather_rows(images, rows), images[rows])
    batches = data.ArrayBatches(images, np.arange(50), 37, shuffle=True, seed=2)
    x, y = batches[0]
    assert np.array_equal(x, images[y])
    # a forked child (Keras' multiprocessing workers) has none of the parent's threads: it makes its own.
    # The parent's pool is first made to start all its threads, so that a child reusing it would wait forever
    monkeypatch.setattr(pipeline, "GATHER_SPLIT_BYTES", 1000)
    monkeypatch.setattr(pipeline, "GATHER_THREADS", 2)
    monkeypatch.setattr(pipeline, "_gather_pool", (os.getpid(), ThreadPoolExecutor(2)))
    everyone = threading.Barrier(3)
    started = [pipeline._gather_pool[1].submit(everyone.wait, 10) for _ in range(2)]
    everyone.wait(10)
    assert all(job.result() is not None for job in started)
    pid = os.fork()
    if pid == 0:  # the child: killed by the alarm if it waits for threads that do not exist
        signal.alarm(30)
        os._exit(0 if np.array_equal(pipeline.gather_rows(images, rows), images[rows]) else 1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_pillow_decoder_matches_tensorflows_geometry_and_keeps_its_own_cache(real_data_dir):
    pytest.importorskip("tensorflow")
    tf_images = data.decoded_images(48, real_data_dir, decoder="tf")
    pil_images = data.decoded_images(48, real_data_dir, decoder="pil")
    assert pil_images.shape == tf_images.shape == (1360, 48, 48, 3) and pil_images.dtype == np.uint8
    difference = np.abs(pil_images.astype(int) - tf_images.astype(int))
    assert difference.mean() < 6          # the same crop and scale; resampling filters differ slightly
    cache = sorted(p.name for p in (real_data_dir / "cache").glob("oxflower17-48px-*.npy"))
    assert len(cache) == 2 and any(name.endswith("-pil.npy") for name in cache)
    with pytest.raises(ValueError, match="decoder"):
        data.decoded_images(48, real_data_dir, decoder="opencv")


def test_decode_and_resize_keeps_the_central_square():
    import tensorflow as tf
    from PIL import Image

    canvas = np.zeros((200, 400, 3), np.uint8)
    canvas[:, 100:300] = 255  # a white central square on a wide black image
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="JPEG", quality=95)
    out = data.decode_and_resize(tf.constant(buf.getvalue()), 50).numpy()
    assert out.shape == (50, 50, 3)
    assert out[5:-5, 5:-5].min() > 230  # all of it is the central white square


def test_pipeline_rejects_bad_arguments(real_data_dir):
    with pytest.raises(ValueError, match="split must be one of"):
        data.oxflower17("training", 32, 8, data_dir=real_data_dir)
    with pytest.raises(ValueError, match="batch_size"):
        data.oxflower17("train", 32, 0, data_dir=real_data_dir)
    with pytest.raises(ValueError, match="dtype"):
        data.oxflower17("train", 32, 8, data_dir=real_data_dir, dtype="float16")


def test_tfds_builder_agrees_with_the_index(synthetic_data_dir):
    from labkit import tfds_oxflower17

    ds, info = tfds_oxflower17.load("test", data_dir=synthetic_data_dir, with_info=True)
    assert info.splits["train"].num_examples == 680 and info.splits["validation"].num_examples == 340
    assert info.features["label"].names == list(data.CLASS_NAMES)
    names = sorted(ex["file_name"].numpy().decode() for ex in ds)
    index = data.oxflower17_index(synthetic_data_dir)
    assert names == sorted(f"image_{i:04d}.jpg" for i in index.loc[index.split == "test", "image_id"])
