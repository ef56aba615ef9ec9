"""labkit on every Keras backend: a backend-neutral subset of the suite under PyTorch (under JAX:
``test_backends_jax.py``, a file of its own so that the two run side by side on CI's two
workers), and a smoke run in an environment without TensorFlow (as on the lent GPU machine: JAX,
PyTorch, no TensorFlow)."""
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

# builders with their exact counts (lab 09's families included), augmentation, LRN, a smoke train
# interrupted and resumed, XLA/jit for the gpu profile, the CLI, a network of one's own, gradients
# (of the loss and of the input: lab 10's explanations), and one training notebook. Lab 09's
# families computing at a small input stay TensorFlow's (33 s more under JAX, for CI's 20 minutes).
JAX_SUBSET = [
    "tests/test_models.py",
    "tests/test_augment.py",
    "tests/test_data.py::test_numpy_batches_reshuffle_every_epoch_and_repeat",
    "tests/test_train.py::test_interrupted_run_resumes_at_the_next_epoch_and_keeps_its_history",
    "tests/test_train.py::test_gpu_profile_training_model_compiles_with_xla_and_no_fallback",
    "tests/test_train.py::test_a_budget_that_keeps_the_recipe_trains_exactly_as_a_run_without_one",
    "tests/test_train.py::test_cli_trains_end_to_end_in_smoke",
    "tests/test_train.py::test_ten_crops_are_corners_centre_and_mirrors",
    "tests/test_own_network.py::test_own_network_and_recipe_train_record_and_rerun_without_retraining",
    "tests/test_inspect.py::test_gradient_norms_match_the_analytic_gradient_and_leave_the_model_as_it_was",
    "tests/test_visualize.py",
    "notebooks/02_alexnet.ipynb",
]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(LABKIT_OFFLINE="1", LABKIT_PROFILE="smoke", **extra)
    return env


# PyTorch: the training path (augmentation, an interrupted and resumed run, the gpu profile's step
# under a real torch.compile), to keep CI under 20 minutes; the builders' counts, the CLI and a
# notebook run under JAX, and every notebook passed under PyTorch by hand (README, Backends)
TORCH_SUBSET = [t for t in JAX_SUBSET if t.startswith(("tests/test_augment.py", "tests/test_train.py",
                                                        "tests/test_inspect.py::test_gradient_norms",
                                                        "tests/test_visualize.py"))
                and not t.endswith("test_cli_trains_end_to_end_in_smoke")]


def _run_subset(tests, tmp_path, real_data_dir, **extra):
    # the exact counts of every builder, not a training step of each (the TensorFlow run has those):
    # on 2 CPU cores XLA compiles each for 5-50 s
    only = ["-k", "not trains_one_step"]
    # the notebook's run folder goes into the test's own folder, not into the checkout's outputs/
    env = _env(LABKIT_DATA_DIR=str(real_data_dir), LABKIT_OUTPUTS_DIR=str(tmp_path / "outputs"), **extra)
    # its temporary folders inside this test's, removed with it when it passes
    basetemp = f"--basetemp={tmp_path / 'pytest'}"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", basetemp, *only, *tests], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1] and "skipped" not in done.stdout.splitlines()[-1]


def test_backend_neutral_subset_passes_under_torch(tmp_path, real_data_dir):
    pytest.importorskip("torch")  # .ci/run installs the CPU build
    # one intra-op thread: the subset shares CI's 2 cores with the other test worker, and PyTorch's
    # threads then fight over them (with one core kept busy beside it: 132 s, one thread 89 s;
    # JAX gains nothing from the same, its time is XLA compiling)
    _run_subset(TORCH_SUBSET, tmp_path, real_data_dir, KERAS_BACKEND="torch", OMP_NUM_THREADS="1")


#: what labkit needs on a machine without TensorFlow (the lent GPU machine has these and CUDA)
NO_TF_PACKAGES = ["keras", "jax", "numpy", "scipy", "pandas", "pillow", "matplotlib"]


def test_gpu_check_trains_in_an_environment_without_tensorflow(tmp_path, real_data_dir):
    """As on the lent GPU machine: a fresh virtual environment with Keras and JAX but no
    TensorFlow. labkit imports, decodes with Pillow, feeds NumPy batches, and
    ``benchmarks/gpu_check.py --tiny`` runs every part: the pipeline, a lab run (with its
    record), the speed table and the ResNet-50 comparison."""
    env_dir = tmp_path / "no-tf"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # not byte-compiled on install (23 s of 31 here) but on import, once: this environment's
    # processes may write the compiled modules whatever PYTHONDONTWRITEBYTECODE says outside
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", "--progress-bar", "off", "--no-compile",
                                *NO_TF_PACKAGES], capture_output=True, text=True, timeout=900)
    assert installed.returncode == 0, installed.stderr[-2000:]
    env = _env(KERAS_BACKEND="jax", PYTHONPATH=str(REPO), LABKIT_DATA_DIR=str(real_data_dir))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    probe = subprocess.run([str(python), "-c", "import importlib.util as u, labkit.backend as b; "
                            "print(u.find_spec('tensorflow') is None, b.has_tensorflow())"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert probe.stdout.split() == ["True", "False"], probe.stderr[-2000:]
    tfds = subprocess.run([str(python), "-c", "import labkit.tfds_oxflower17"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert tfds.returncode != 0 and "pip install tensorflow" in tfds.stderr   # a clear message, not a crash

    out = tmp_path / "gpu-check"
    done = subprocess.run([str(python), "benchmarks/gpu_check.py", "--tiny", "--models", "alexnet",
                           "--recipe", "optimizer=adamw", "ema=true", "--model-option", "lrn=false",
                           "--out", str(out), "--deadline", "600"],
                          cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["tiny"] and report["backend"] == "jax" and report["skipped"] == []
    assert [p["batch"] for p in report["pipeline"]] == [4, 8]
    assert all(p["pipeline"] == "ArrayBatches" and p["images_per_second"] > 0 for p in report["pipeline"])
    record = report["runs"][0]["record"]
    assert record["backend"] == "jax" and record["pipeline"] == "numpy" and record["decoder"] == "pil"
    assert record["model"] == "alexnet" and record["epochs_run"] == 1 and record["test_images"] == 340
    assert report["recipe"] == {"optimizer": "adamw", "ema": True}    # --recipe replaced the profile's
    assert record["config"]["optimizer"] == "adamw" and record["config"]["ema"] is True
    assert record["model_options"] == {"lrn": False}
    assert [s["batch"] for s in report["speed"]] == [4, 8] and all(s["images_per_second"] > 0 for s in report["speed"])
    assert report["resnet50_ratio"] > 0 and "labkit / keras.applications ResNet-50" in done.stdout
    assert list(Path(real_data_dir, "cache").glob("oxflower17-*px-*-pil.npy"))   # the Pillow decoder's own cache


def test_gpu_check_refuses_a_recipe_setting_that_train_does_not_have(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    monkeypatch.setattr(gpu_check, "Clock", None)   # refused before the check starts
    for setting in ("learning_rat=0.1", "model=vgg11"):
        with pytest.raises(SystemExit) as refused:
            gpu_check.main(["--tiny", "--out", str(tmp_path), "--recipe", setting])
        assert refused.value.code == 2 and not list(tmp_path.iterdir())


def test_gpu_check_skips_what_its_deadline_leaves_no_time_for(tmp_path, real_data_dir):
    out = tmp_path / "short"
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--tiny", "--out", str(out), "--deadline", "1"],
                          cwd=REPO, env=_env(LABKIT_DATA_DIR=str(real_data_dir)), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert len(report["skipped"]) == 1 + 4 + 4 + 2 and report["runs"] == [] and report["speed"] == []
