"""The notebooks' first call: check versions, report the device and profile, set seeds.

``labkit.env.setup()`` never fails for a missing GPU: it warns and carries on with the
profile the machine can handle, so a lab still runs (slowly) on a laptop.
"""
from __future__ import annotations

import platform
import sys
import warnings

from labkit import __version__
from labkit.profiles import Profile, get_profile

MIN_VERSIONS = {"tensorflow": (2, 16), "keras": (3, 3)}


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def device_report() -> dict:
    """Devices TensorFlow sees, e.g. ``{"gpus": ["NVIDIA T4"], "cpus": 1, "logical_cpus": 2}``."""
    import os

    import tensorflow as tf

    gpus = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(gpu)
            gpus.append(details.get("device_name", gpu.name))
        except Exception:  # details are optional; the device itself is what matters
            gpus.append(gpu.name)
    return {"gpus": gpus, "cpu_cores": os.cpu_count(),
            "device": f"GPU x{len(gpus)}: {', '.join(gpus)}" if gpus else f"CPU ({os.cpu_count()} cores)"}


def setup(seed: int = 42, profile: str | Profile | None = None, verbose: bool = True) -> Profile:
    """Prepare a notebook: versions, device, profile, mixed precision, seeds. Returns the profile.

    * warns (never fails) when there is no GPU or a version is older than labkit was tested on;
    * turns on mixed precision (``mixed_float16``) when the profile asks for it and a GPU exists;
    * seeds Python, NumPy and TensorFlow through ``keras.utils.set_random_seed``.
    """
    import keras
    import tensorflow as tf

    prof = get_profile(profile)
    devices = device_report()
    for name, module in (("tensorflow", tf), ("keras", keras)):
        if _version_tuple(module.__version__) < MIN_VERSIONS[name]:
            minimum = ".".join(map(str, MIN_VERSIONS[name]))
            warnings.warn(f"{name} {module.__version__} is older than {minimum}, which labkit needs; "
                          f"run `pip install -U -r requirements.txt`.", stacklevel=2)
    if not devices["gpus"]:
        hint = ("On Colab: Runtime > Change runtime type > GPU, then run this cell again."
                if "google.colab" in sys.modules else "Training will be slow on the CPU.")
        warnings.warn(f"No GPU found. {hint} Continuing with the '{prof.name}' profile.", stacklevel=2)
    policy = "mixed_float16" if (prof.mixed_precision and devices["gpus"]) else "float32"
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(seed)
    if verbose:
        rows = [
            ("labkit", __version__),
            ("python", platform.python_version()),
            ("tensorflow", tf.__version__),
            ("keras", keras.__version__),
            ("device", devices["device"]),
            ("profile", f"{prof.name}: {prof.description}"),
            ("image size / batch", f"{prof.image_size} px / {prof.batch_size}"),
            ("precision", policy),
            ("seed", str(seed)),
        ]
        width = max(len(k) for k, _ in rows)
        print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    return prof
