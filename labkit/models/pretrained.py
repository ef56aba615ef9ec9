"""ImageNet weights for labkit's builders: Keras' published files, ported into labkit's networks.

labkit's VGG-16/19, ResNet-50/101/152 (v1), DenseNet-121/169/201 and EfficientNet-B0 compute
exactly the functions of ``keras.applications``' networks of those names (tested by copying weights
and comparing outputs; EfficientNet B1-B7 are the same blocks, scaled). So the weights Keras publishes, trained on ImageNet, load into them:
Keras downloads the file (``keras.utils.get_file``: its cache, ``~/.keras/models`` or
``$KERAS_HOME/models``, and its MD5 checksum), builds its own model from it, and
``port_weights`` copies it into labkit's.

With 1000 classes at the paper's input size (224 px; EfficientNet: its variant's) the whole
network is loaded, classifier included.
Otherwise Keras' ``_notop`` file gives the convolutional backbone and the classifier starts new
(VGG's fc6, fc7 and fc8; ResNet's fc), as ``include_top=False`` does in Keras.

No published weights exist for AlexNet, GoogLeNet, ResNet-18/34, LeNet-5, labkit's ResNet v2
(its blocks downsample where the paper's do, not where ``ResNet50V2``'s do), VGG with batch
norm, DenseNet-161, ResNeXt or SE-ResNet; asking for them raises ``ValueError``.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import keras

from labkit import network
from labkit.models.layers import CaffePreprocessing
from labkit.models.port import port_weights

KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"
KERAS_EFFICIENTNET = "https://storage.googleapis.com/keras-applications/"


class MissingWeightsError(FileNotFoundError):
    """The weights file is not in Keras' cache and cannot be downloaded; the message says where
    to put it."""


@dataclasses.dataclass(frozen=True)
class Published:
    """One of Keras' ImageNet weight files (names and MD5 checksums as ``keras.applications``)."""

    application: str            # the keras.applications constructor
    stem: str                   # under KERAS_WEIGHTS, without ".h5" / "_notop.h5"
    md5: str                    # of the full network
    md5_notop: str              # of the convolutional backbone
    options: tuple = ()         # labkit builder options the weights need, as (name, value)
    preprocessing: str = "caffe"   # "caffe" (BGR, mean pixel subtracted) or "torch" (RGB in [0, 1], ImageNet mean and std)
    base: str = KERAS_WEIGHTS   # where the files lie
    size: int = 224             # the input side the whole network (with its classifier) was trained at

    def file(self, top: bool) -> tuple[str, str, str]:
        """``(file name, URL, md5)``."""
        name = Path(self.stem).name + (".h5" if top else "_notop.h5")
        return name, self.base + self.stem + (".h5" if top else "_notop.h5"), self.md5 if top else self.md5_notop


_RESNET = "resnet/resnet{}_weights_tf_dim_ordering_tf_kernels"
IMAGENET = {
    "vgg16": Published("VGG16", "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels",
                       "64373286793e3c8b2b4e3219cbf3544b", "6d6bbae143d832006294945121d1f1fc",
                       (("config", "D"), ("batch_norm", False))),
    "vgg19": Published("VGG19", "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels",
                       "cbe5617147190e668d6c5d5026f83318", "253f8cb515780f3b799900260a226db6",
                       (("config", "E"), ("batch_norm", False))),
    "resnet50": Published("ResNet50", _RESNET.format(50), "2cb95161c43110f7111970584f804107",
                          "4d473c1dd8becc155b73f8504c6f6626", (("version", 1),)),
    "resnet101": Published("ResNet101", _RESNET.format(101), "f1aeb4b969a6efcfb50fad2f0c20cfc5",
                           "88cf7a10940856eca736dc7b7e228a21", (("version", 1),)),
    "resnet152": Published("ResNet152", _RESNET.format(152), "100835be76be38e30d865e96f2aaae62",
                           "ee4c566cf9a93f14d82f913c2dc6dd0c", (("version", 1),)),
    **{f"densenet{depth}": Published(f"DenseNet{depth}", f"densenet/densenet{depth}_weights_tf_dim_ordering_tf_kernels",
                                     md5, md5_notop, preprocessing="torch")
       for depth, md5, md5_notop in ((121, "9d60b8095a5708f2dcce2bca79d332c7", "30ee3e1110167f948a6b9946edeeb738"),
                                     (169, "d699b8f76981ab1b30698df4c175e90b", "b8c4d4c20dd625c148057b9ff1c1176b"),
                                     (201, "1ceb130c1ea1b78c3bf6114dbdfd8807", "c13680b51ded0fb44dff2d8f86ac8bb1"))},
    # EfficientNet: trained in TensorFlow on RGB in [0, 1] normalised by ImageNet's mean and std
    # (Keras' models hold that normalisation inside them; labkit's networks take it from preprocess())
    **{f"efficientnet{v}": Published(f"EfficientNet{v.upper()}", f"efficientnet{v}", md5, md5_notop,
                                     preprocessing="torch", base=KERAS_EFFICIENTNET, size=size)
       for v, size, md5, md5_notop in (
           ("b0", 224, "902e53a9f72be733fc0bcb005b3ebbac", "50bc09e76180e00e4465e1a485ddc09d"),
           ("b1", 240, "1d254153d4ab51201f1646940f018540", "74c4e6b3e1f6a1eea24c589628592432"),
           ("b2", 260, "b15cce36ff4dcbd00b6dd88e7857a6ad", "111f8e2ac8aa800a7a99e3239f7bfb39"),
           ("b3", 300, "ffd1fdc53d0ce67064dc6a9c7960ede0", "af6d107764bb5b1abb91932881670226"),
           ("b4", 380, "18c95ad55216b8f92d7e70b3a046e2fc", "ebc24e6d6c33eaebbd558eafbeedf1ba"),
           ("b5", 456, "ace28f2a6363774853a83a0b21b9421a", "38879255a25d3c92d5e44e04ae6cec6f"),
           ("b6", 528, "165f6e37dce68623721b423839de8be5", "9ecce42647a20130c1f39a5d4cb75743"),
           ("b7", 600, "8c03f828fec3ef71311cd463b6759d99", "cbcfe4450ddf6f3ad90b1b398090fe4a"))},
}
# ImageNet's channel statistics for RGB in [0, 1] ("torch" preprocessing)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# the builders' defaults for the options above
_DEFAULTS = {"config": {"vgg16": "D", "vgg19": "E"}, "batch_norm": False, "version": 1}


def published(name: str, options: dict | None = None) -> Published:
    """The ImageNet weights for labkit model ``name`` built with ``options``; ``ValueError`` if
    none exist, saying why."""
    if name not in IMAGENET:
        with_weights = ", ".join(IMAGENET)
        raise ValueError(f"No ImageNet weights exist for {name}: Keras publishes them for {with_weights} "
                         "only. Train it from scratch (weights=None), or start from one of those.")
    entry = IMAGENET[name]
    for option, needed in entry.options:
        default = _DEFAULTS[option][name] if isinstance(_DEFAULTS[option], dict) else _DEFAULTS[option]
        value = (options or {}).get(option, default)
        if value != needed:
            raise ValueError(f"No ImageNet weights exist for {name} with {option}={value!r}: Keras' "
                             f"{entry.application} weights fit {option}={needed!r} only.")
    return entry


def cache_dir() -> Path:
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models``, else ``~/.keras/models``."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def weights_file(name: str, top: bool, options: dict | None = None) -> Path:
    """The ImageNet weights file for ``name`` (with the classifier if ``top``), from Keras' cache
    or downloaded into it, its checksum verified by Keras."""
    file_name, url, md5 = published(name, options).file(top)
    folder = cache_dir()
    target = folder / file_name
    if network.offline() and not target.is_file():
        raise MissingWeightsError(_missing(name, file_name, url, folder, "downloads are off ($LABKIT_OFFLINE)"))
    try:
        return Path(keras.utils.get_file(file_name, url, cache_subdir="models", cache_dir=str(folder.parent),
                                         file_hash=md5))
    except Exception as err:  # Keras raises a plain Exception for a failed download
        raise MissingWeightsError(_missing(name, file_name, url, folder, f"the download failed: {err}")) from err


def _missing(name, file_name, url, folder, why) -> str:
    return (f"ImageNet weights for {name} are not available ({why}). On a machine with internet, "
            f"download {url} and put it, named {file_name}, into {folder}; or run where labkit can "
            "download it (Colab), then build again.")


def load_imagenet(model: keras.Model, name: str, options: dict | None = None) -> list[tuple[str, str]]:
    """Load ImageNet weights into ``model`` (labkit's ``name`` built with ``options``): all of it
    when it has 1000 classes at 224x224x3, else the backbone only. Returns the layers copied."""
    shape = tuple(model.inputs[0].shape[1:])
    classes = int(model.outputs[0].shape[-1])
    entry = published(name, options)
    top = classes == 1000 and shape == (entry.size, entry.size, 3)
    path = weights_file(name, top, options)
    build_reference = getattr(keras.applications, entry.application)
    reference = build_reference(weights=str(path), include_top=top, input_shape=shape)
    return port_weights(reference, model)


def preprocess(name: str, input_range: float = 255.0) -> keras.layers.Layer:
    """The input scaling that ``name``'s ImageNet weights expect, as a layer: Caffe's (BGR, mean
    pixel subtracted, no division) for VGG and ResNet v1; RGB in [0, 1] normalised by ImageNet's
    channel mean and standard deviation for DenseNet and EfficientNet. ``input_range``: 255 for images in
    0-255, 1 for images in [0, 1]. ``labkit.train`` puts it in front of the network by itself
    when it starts from these weights (instead of the training set's channel statistics)."""
    entry = published(name)
    if entry.preprocessing == "caffe":
        return CaffePreprocessing(input_range=input_range, name="imagenet_preprocessing")
    return keras.Sequential([keras.layers.Rescaling(1.0 / input_range),
                             keras.layers.Normalization(mean=IMAGENET_MEAN, variance=[s * s for s in IMAGENET_STD])],
                            name="imagenet_preprocessing")
