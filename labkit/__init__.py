"""labkit: a Keras/TensorFlow course kit on CNN architectures (LeNet-5 to ResNet) and OxFlower17.

Submodules, one concern each:
    labkit.profiles   how heavy a run is (gpu / cpu / smoke), chosen by LABKIT_PROFILE
    labkit.env        the notebooks' setup call: versions, device, profile, seeds
    labkit.data       OxFlower17: download, verify, extract, split, tf.data pipeline, TFDS builder
"""
import os as _os

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notices) buries what students need
# to read; keep warnings and errors. A value set by the user wins.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

#: Where the kit is published; the notebooks' Colab badge and setup cell install from here.
REPO_URL = "https://github.com/labkit-course/labkit"
