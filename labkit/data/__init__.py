"""OxFlower17 (Nilsback & Zisserman, CVPR 2006): 17 classes x 80 images, in three steps.

    labkit.data.files      download, verify, extract, split (``datasplits.mat`` or labkit's own), index
    labkit.data.decode     decode every JPEG once, ever, into a disk cache (TensorFlow or Pillow)
    labkit.data.pipeline   batches for Keras: tf.data where TensorFlow is installed, NumPy elsewhere

The names students use are here: ``oxflower17``, ``oxflower17_index``, ``decoded_images``,
``CLASS_NAMES``, ``NUM_CLASSES`` ... TensorFlow Datasets has its own builder
(``labkit.tfds_oxflower17``), which needs TensorFlow.
"""
from labkit.data.decode import decode_and_resize, decode_and_resize_pil, decoded_images  # noqa: F401
from labkit.data.files import (  # noqa: F401
    ARCHIVE_MD5, ARCHIVE_NAME, ARCHIVE_URL, CLASS_NAMES, FALLBACK_SPLIT, IMAGES_PER_CLASS, NUM_CLASSES,
    NUM_IMAGES, OFFICIAL_SPLIT, PARTITIONS, SPLIT_CHOICES, SPLIT_SIZES, SPLITS_MD5, SPLITS_NAME, SPLITS_URL,
    DataError, default_data_dir, ensure_images, fallback_splits, image_sizes, label_of, load_splits,
    oxflower17_index, resolve_data_dir, select_split, validate_images, resolve_classes, class_names, select_task, split_classes,
)
from labkit.data.pipeline import ArrayBatches, array_batches, first_batch_repeated, oxflower17  # noqa: F401

