"""labkit.profiles and labkit.env: one place decides how heavy a run is."""
import warnings

import pytest

from labkit import env, profiles


def test_profile_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("LABKIT_PROFILE", "cpu")
    assert profiles.get_profile().name == "cpu"
    monkeypatch.setenv("LABKIT_PROFILE", " Smoke ")
    assert profiles.get_profile().name == "smoke"
    assert profiles.get_profile("gpu").name == "gpu"  # an explicit argument wins


def test_unknown_profile_says_what_to_do(monkeypatch):
    monkeypatch.setenv("LABKIT_PROFILE", "fast")
    with pytest.raises(ValueError, match=r"Unknown labkit profile 'fast' \(from \$LABKIT_PROFILE\).*gpu, cpu, smoke"):
        profiles.get_profile()


def test_detection_without_gpu_picks_cpu(monkeypatch):
    monkeypatch.delenv("LABKIT_PROFILE", raising=False)
    monkeypatch.setattr(profiles, "gpu_count", lambda: 0)
    assert profiles.get_profile().name == "cpu"
    monkeypatch.setattr(profiles, "gpu_count", lambda: 2)
    assert profiles.get_profile().name == "gpu"


def test_profiles_get_lighter_from_gpu_to_smoke():
    gpu, cpu, smoke = (profiles.PROFILES[n] for n in ("gpu", "cpu", "smoke"))
    assert gpu.image_size == 224 and gpu.mixed_precision
    assert gpu.image_size > cpu.image_size > smoke.image_size
    assert smoke.steps_per_epoch is not None and smoke.epochs <= cpu.epochs <= gpu.epochs
    assert not cpu.mixed_precision and not smoke.mixed_precision


def test_setup_warns_without_gpu_but_never_fails(capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prof = env.setup(seed=1, profile="smoke")
    assert prof.name == "smoke"
    assert any("No GPU found" in str(w.message) for w in caught)
    out = capsys.readouterr().out
    assert "profile" in out and "smoke" in out and "tensorflow" in out and "CPU" in out
    import keras

    assert keras.mixed_precision.global_policy().name == "float32"  # no mixed precision on CPU


def test_setup_seeds_make_draws_repeatable():
    import numpy as np
    import tensorflow as tf

    env.setup(seed=3, profile="smoke", verbose=False)
    a = (np.random.rand(), float(tf.random.uniform(())))
    env.setup(seed=3, profile="smoke", verbose=False)
    assert a == (np.random.rand(), float(tf.random.uniform(())))


@pytest.mark.parametrize("flags, native", [
    ("fpu sse2 avx2 avx512f avx512_vnni avx512_bf16", True),   # Cooper Lake, Zen 4
    ("fpu sse2 avx2 avx512f amx_tile amx_bf16", True),         # Sapphire Rapids
    ("fpu sse2 avx2 avx512f avx512_vnni", False),               # Cascade Lake: bfloat16 emulated
])
def test_cpu_bfloat16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n")
    assert env.cpu_has_native_bfloat16(str(info)) is native
    assert env.cpu_has_native_bfloat16(str(tmp_path / "missing")) is False  # not Linux: float32


def test_precision_policy_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(env, "cpu_has_native_bfloat16", lambda: True)
    t4, h100 = {"name": "Tesla T4", "compute_capability": (7, 5)}, {"name": "H100", "compute_capability": (9, 0)}
    assert env.precision_policy(False, gpus=[t4]) == "float32"       # the profile did not ask
    assert env.precision_policy(True, gpus=[t4]) == "mixed_float16"  # pre-Ampere GPU: float16 with loss scaling
    assert env.precision_policy(True, gpus=[h100]) == "mixed_bfloat16"  # Ampere or newer: bfloat16, no scaling
    assert env.precision_policy(True, gpus=[h100, t4]) == "mixed_float16"  # every GPU must have it
    assert env.precision_policy(True, gpus=[]) == "mixed_bfloat16"
    monkeypatch.setattr(env, "cpu_has_native_bfloat16", lambda: False)
    assert env.precision_policy(True, gpus=[]) == "float32"        # emulated bfloat16 would be slower


def test_a_model_recipe_may_ask_for_mixed_precision(monkeypatch):
    from labkit import train

    monkeypatch.setattr(env, "cpu_has_native_bfloat16", lambda: False)
    cfg = train.make_config("resnet18", "smoke", mixed_precision=True)
    assert cfg.mixed_precision and not train.make_config("resnet18", "smoke").mixed_precision
    import keras

    try:
        assert train.set_precision(cfg) == "float32" == keras.mixed_precision.global_policy().name
    finally:
        keras.mixed_precision.set_global_policy("float32")
