"""labkit: a Keras 3 course kit on CNN architectures (LeNet-5 to ResNet) and OxFlower17, on any
Keras backend (TensorFlow, JAX, PyTorch).

Submodules, one concern each, in the order data -> model -> train -> records -> course tooling:
    labkit.profiles   how heavy a run is (gpu / cpu / smoke), chosen by LABKIT_PROFILE
    labkit.backend    everything that depends on the Keras backend (devices, determinism, GPUs)
    labkit.env        the notebooks' setup call: versions, device, profile, seeds
    labkit.data       OxFlower17: files and splits, decoding once into a cache, batches
    labkit.models     the architectures, as the papers lay them out
    labkit.augment    augmentation: layers that compile, and AlexNet's by hand
    labkit.train      training: config, inputs, model and recipe, time budget, engine, run records
    labkit.evaluate   top-1/top-5, 10-crop, confusion matrix; labkit.report: tables of run records
"""
from labkit import startup as _startup
from labkit.startup import LabkitWarning  # noqa: F401

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notices) buries what students need to
# read: load it quietly, before anything else imports it (labkit.startup)
_startup.quiet_start()

__version__ = "0.1.0"

#: Where the kit is published; the notebooks' Colab badge and setup cell install from here.
REPO_URL = "https://github.com/labkit-course/labkit"
