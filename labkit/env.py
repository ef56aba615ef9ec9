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


def cpu_has_native_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU computes bfloat16 in hardware (x86 ``avx512_bf16`` or ``amx_bf16``, read
    from ``/proc/cpuinfo``). oneDNN then runs bfloat16 convolutions faster than float32; without
    these instructions bfloat16 is emulated and slower, so labkit keeps float32."""
    try:
        with open(cpuinfo) as info:
            flags = next((line for line in info if line.startswith("flags")), "").split()
    except OSError:  # not Linux: no way to tell, so no bfloat16
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def precision_policy(mixed_precision: bool, gpus: int | None = None) -> str:
    """The Keras dtype policy for a profile that asks (or not) for mixed precision:

    * GPU: ``mixed_float16`` (float16 maths on tensor cores, float32 weights, scaled loss);
    * CPU with native bfloat16: ``mixed_bfloat16`` (float32 weights; bfloat16 has float32's
      range, so no loss scaling; measured 1.3x faster for ResNet-18 on 2 cores, README);
    * otherwise, or when not asked: ``float32``.
    """
    if not mixed_precision:
        return "float32"
    if gpus is None:
        import tensorflow as tf

        gpus = len(tf.config.list_physical_devices("GPU"))
    if gpus:
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_native_bfloat16() else "float32"


def setup(seed: int = 42, profile: str | Profile | None = None, verbose: bool = True) -> Profile:
    """Prepare a notebook: versions, device, profile, mixed precision, seeds. Returns the profile.

    * warns (never fails) when there is no GPU or a version is older than labkit was tested on;
    * turns on mixed precision when the profile asks for it and the hardware has it
      (``precision_policy``: float16 on a GPU, bfloat16 on a CPU that computes it natively);
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
    policy = precision_policy(prof.mixed_precision, gpus=len(devices["gpus"]))
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
