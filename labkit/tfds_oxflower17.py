"""OxFlower17 as a TensorFlow Datasets builder, ``oxford_flowers17`` (TFDS ships only the 102).

Use it through ``labkit.tfds_oxflower17.load(...)`` or, once this module is imported,
``tfds.load("oxford_flowers17/partition1", download_and_prepare_kwargs=...)`` with a
``manual_dir`` that holds ``17flowers.tgz``. The builder reuses labkit's verified extraction and
its split (official ``datasplits.mat`` when present, else labkit's documented fallback), so
``tfds`` and ``labkit.data.oxflower17`` always agree on which image is in which split.
It lives in a package module on purpose: TFDS locates a builder's code folder from its module.
It needs TensorFlow and TensorFlow Datasets (``pip install tensorflow tensorflow-datasets``);
``labkit.data`` needs neither, and this module depends on it, never the other way round.
"""
from __future__ import annotations

import shutil

try:
    import tensorflow_datasets as tfds
except ImportError as err:  # a JAX- or PyTorch-only machine
    raise ImportError("labkit's TFDS builder needs TensorFlow Datasets (and TensorFlow): "
                      "pip install tensorflow tensorflow-datasets. Without them, use "
                      "labkit.data.oxflower17(), which works on every backend.") from err

from labkit.data import files as data

_CITATION = """@inproceedings{Nilsback06,
  author = {Nilsback, M-E. and Zisserman, A.},
  title = {A Visual Vocabulary for Flower Classification},
  booktitle = {IEEE Conference on Computer Vision and Pattern Recognition},
  year = {2006}}"""


class OxfordFlowers17(tfds.core.GeneratorBasedBuilder):
    """Oxford 17 Category Flower Dataset: 17 classes x 80 images; three train/val/test partitions."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release, built from 17flowers.tgz with labkit's splits."}
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name=f"partition{k}", description=f"train/val/test partition {k}")
        for k in data.PARTITIONS
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Put {data.ARCHIVE_NAME} ({data.ARCHIVE_URL}) and, for the official splits, "
        f"{data.SPLITS_NAME} ({data.SPLITS_URL}) into the manual_dir."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "label": tfds.features.ClassLabel(names=list(data.CLASS_NAMES)),
                "file_name": tfds.features.Text(),
            }),
            supervised_keys=("image", "label"),
            homepage="https://www.robots.ox.ac.uk/~vgg/data/flowers/17/",
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager):
        partition = int(self.builder_config.name.removeprefix("partition"))
        index = data.oxflower17_index(dl_manager.manual_dir, partition=partition)
        return {
            tfds_split: self._generate_examples(index[index["split"] == split])
            for tfds_split, split in (("train", "train"), ("validation", "val"), ("test", "test"))
        }

    def _generate_examples(self, rows):
        for row in rows.itertuples():
            name = f"image_{row.image_id:04d}.jpg"
            yield name, {"image": row.path, "label": int(row.label), "file_name": name}


def load(split: str = "train", data_dir=None, partition: int = 1, **load_kwargs):
    """Load OxFlower17 with ``tfds.load`` through this builder, ``oxford_flowers17``.

    The builder prepares the data set from labkit's data directory (its *manual dir*), so it
    needs no network when the archive is there. Splits are ``train``, ``validation``, ``test``.
    A prepared copy made with another split source (e.g. before ``datasplits.mat`` was added)
    is rebuilt, so TFDS and ``labkit.data.oxflower17()`` always agree.
    """
    root = data.resolve_data_dir(data_dir)
    data.ensure_images(root)
    split_name, _ = data.load_splits(root, partition)
    prepared = root / "tfds" / "oxford_flowers17" / f"partition{partition}"
    stamp = prepared / "labkit-split.txt"
    if prepared.exists() and (not stamp.is_file() or stamp.read_text() != split_name):
        shutil.rmtree(prepared)  # a derived cache, rebuilt from the archive below
    config = tfds.download.DownloadConfig(manual_dir=str(root))
    # TFDS reports its own bookkeeping while it prepares (e.g. "Variant folder ... has no
    # dataset_info.json" for the folder it is about to fill) at absl's WARNING level: keep errors
    from absl import logging as absl_logging

    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        result = tfds.load(
            f"oxford_flowers17/partition{partition}", split=split, data_dir=str(root / "tfds"),
            download_and_prepare_kwargs={"download_config": config}, **load_kwargs,
        )
    finally:
        absl_logging.set_verbosity(verbosity)
    stamp.write_text(split_name)
    return result
