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
from labkit.startup import LabkitWarning

MIN_VERSIONS = {"tensorflow": (2, 16), "keras": (3, 3), "jax": (0, 4)}


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def device_report() -> dict:
    """Devices the Keras backend sees, e.g. ``{"gpus": ["Tesla T4"], "cpu_cores": 2, "device": ...}``."""
    import os

    from labkit import backend

    gpus = [gpu["name"] for gpu in backend.gpus()]
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


#: the instruction sets that decide CPU speed for these labs, named next to every timing
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_description(cpuinfo: str = "/proc/cpuinfo") -> str:
    """``Intel(R) Xeon(R) Processor, 2 cores, avx2 avx512f avx512_bf16 amx_bf16``: the CPU to
    name next to a timing (``lscpu``'s model name and the flags that matter here)."""
    import os

    try:
        with open(cpuinfo) as info:
            lines = info.read().splitlines()
    except OSError:
        return f"{platform.processor() or 'unknown CPU'}, {os.cpu_count()} cores"
    name = next((l.split(":", 1)[1].strip() for l in lines if l.startswith("model name")), "unknown CPU")
    flags = next((l.split(":", 1)[1].split() for l in lines if l.startswith("flags")), [])
    return f"{name}, {os.cpu_count()} cores, " + (" ".join(f for f in SPEED_FLAGS if f in flags) or "no AVX2")


def precision_policy(mixed_precision: bool, gpus: list[dict] | None = None) -> str:
    """The Keras dtype policy for a profile that asks (or not) for mixed precision:

    * GPU of compute capability 8.0 or newer (Ampere: A100, L4, H100): ``mixed_bfloat16``
      (16-bit maths on tensor cores, float32 weights; bfloat16 has float32's range, so no loss
      scaling);
    * older GPU (T4, V100): ``mixed_float16`` (float16 maths on tensor cores, scaled loss);
    * CPU with native bfloat16: ``mixed_bfloat16`` (measured 1.3x faster for ResNet-18 on 2
      cores, README);
    * otherwise, or when not asked: ``float32``.

    ``gpus``: ``labkit.backend.gpus()`` (asked when not given).
    """
    from labkit import backend

    if not mixed_precision:
        return "float32"
    gpus = backend.gpus() if gpus is None else gpus
    if gpus:
        return "mixed_bfloat16" if backend.has_bfloat16_gpu(gpus) else "mixed_float16"
    return "mixed_bfloat16" if cpu_has_native_bfloat16() else "float32"


def setup(seed: int = 42, profile: str | Profile | None = None, verbose: bool = True) -> Profile:
    """Prepare a notebook: versions, device, profile, mixed precision, seeds. Returns the profile.

    * warns (never fails) when there is no GPU or a version is older than labkit was tested on;
    * turns on mixed precision when the profile asks for it and the hardware has it
      (``precision_policy``: float16 on a GPU, bfloat16 on a CPU that computes it natively);
    * seeds Python, NumPy and TensorFlow through ``keras.utils.set_random_seed``.
    """
    import keras

    from labkit import backend

    prof = get_profile(profile)
    gpus = backend.gpus()
    devices = device_report()
    versions = backend.versions()
    for name, version in versions.items():
        if name in MIN_VERSIONS and _version_tuple(version) < MIN_VERSIONS[name]:
            minimum = ".".join(map(str, MIN_VERSIONS[name]))
            warnings.warn(f"{name} {version} is older than {minimum}, which labkit needs; "
                          f"run `pip install -U -r requirements.txt`.", LabkitWarning, stacklevel=2)
    if not devices["gpus"]:
        hint = ("On Colab: Runtime > Change runtime type > GPU, then run this cell again."
                if "google.colab" in sys.modules else "Training will be slow on the CPU.")
        warnings.warn(f"No GPU found. {hint} Continuing with the '{prof.name}' profile.", LabkitWarning,
                      stacklevel=2)
    backend.setup_gpu_memory()
    policy = precision_policy(prof.mixed_precision, gpus=gpus)
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(seed)
    if verbose:
        rows = [
            ("labkit", __version__),
            ("python", platform.python_version()),
            ("keras", f"{keras.__version__}, backend {backend.name()}"),
            *[(name, version) for name, version in versions.items() if name != "keras"],
            ("device", devices["device"]),
            ("profile", f"{prof.name}: {prof.description}"),
            ("image size / batch", f"{prof.image_size} px / {prof.batch_size}"),
            ("precision", policy),
            ("seed", str(seed)),
        ]
        width = max(len(k) for k, _ in rows)
        print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    return prof
