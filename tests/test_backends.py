"""labkit on every Keras backend: a backend-neutral subset of the suite under JAX, and a smoke run
in an environment without TensorFlow (as on the lent GPU machine: JAX, PyTorch, no TensorFlow)."""
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

# builders with their exact counts, augmentation, LRN, a smoke train interrupted and resumed,
# XLA/jit for the gpu profile, the CLI, and one training notebook
JAX_SUBSET = [
    "tests/test_models.py",
    "tests/test_augment.py",
    "tests/test_data.py::test_numpy_batches_reshuffle_every_epoch_and_repeat",
    "tests/test_train.py::test_interrupted_run_resumes_at_the_next_epoch_and_keeps_its_history",
    "tests/test_train.py::test_gpu_profile_training_model_compiles_with_xla_and_no_fallback",
    "tests/test_train.py::test_cli_trains_end_to_end_in_smoke",
    "tests/test_train.py::test_ten_crops_are_corners_centre_and_mirrors",
    "notebooks/02_alexnet.ipynb",
]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(LABKIT_OFFLINE="1", LABKIT_PROFILE="smoke", **extra)
    return env


def test_backend_neutral_subset_passes_under_jax(tmp_path):
    pytest.importorskip("jax")
    # the exact counts of every builder, not a training step of each (the TensorFlow run has those):
    # on 2 CPU cores XLA compiles each for 5-50 s; compiled programs are shared through a cache
    only = ["-k", "not trains_one_step"]
    env = _env(KERAS_BACKEND="jax", JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", *only, *JAX_SUBSET], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1] and "skipped" not in done.stdout.splitlines()[-1]


#: what labkit needs on a machine without TensorFlow (the lent GPU machine has these and CUDA)
NO_TF_PACKAGES = ["keras", "jax", "numpy", "scipy", "pandas", "pillow", "matplotlib"]


def test_trains_in_an_environment_without_tensorflow(tmp_path, real_data_dir):
    """A fresh virtual environment with Keras and JAX only: labkit imports, decodes with Pillow,
    feeds NumPy batches and trains a smoke run from the command line."""
    env_dir = tmp_path / "no-tf"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", "--progress-bar", "off", *NO_TF_PACKAGES],
                               capture_output=True, text=True, timeout=900)
    assert installed.returncode == 0, installed.stderr[-2000:]
    env = _env(KERAS_BACKEND="jax", PYTHONPATH=str(REPO))
    probe = subprocess.run([str(python), "-c", "import importlib.util as u, labkit.backend as b; "
                            "print(u.find_spec('tensorflow') is None, b.has_tensorflow())"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert probe.stdout.split() == ["True", "False"], probe.stderr[-2000:]
    tfds = subprocess.run([str(python), "-c", "import labkit.tfds_oxflower17"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert tfds.returncode != 0 and "pip install tensorflow" in tfds.stderr   # a clear message, not a crash
    out = tmp_path / "run"
    run = subprocess.run([str(python), "-m", "labkit", "train", "--model", "resnet18", "--image-size", "32",
                          "--out", str(out), "--data-dir", str(real_data_dir)],
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    record = json.loads((out / "results.json").read_text())
    assert record["backend"] == "jax" and record["pipeline"] == "numpy" and record["decoder"] == "pil"
    assert record["epochs_run"] == 1 and 0 <= record["test_top1"] <= 1
    assert list(Path(real_data_dir, "cache").glob("oxflower17-32px-*-pil.npy"))   # its own cache
