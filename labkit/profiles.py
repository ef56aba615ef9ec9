"""Run profiles: the one place that decides how heavy a run is.

    gpu    the real lab: 224-px inputs, the papers' schedules (ResNets: AdamW and cosine, as in
           cpu), mixed precision and XLA.
    cpu    a reduced but real run: every lab's training finishes in about 15 minutes on 2 cores.
    smoke  CI: the smallest sizes and a few steps, so that each notebook executes in about a minute.

The profile comes from ``LABKIT_PROFILE`` if it is set, otherwise from the hardware (a GPU
present means ``gpu``, otherwise ``cpu``). Notebooks never edit these numbers: change the
environment variable instead, e.g. ``LABKIT_PROFILE=smoke jupyter lab``.
"""
from __future__ import annotations

import dataclasses
import os

ENV_VAR = "LABKIT_PROFILE"


@dataclasses.dataclass(frozen=True)
class Profile:
    """How heavy a run is. Every field is a default that a lab or the CLI may override."""

    name: str
    description: str
    image_size: int          # square input side fed to the architectures (pixels)
    batch_size: int
    epochs: int
    steps_per_epoch: int | None   # None: one pass over the training split per epoch
    mixed_precision: bool    # float32 weights, 16-bit maths on a GPU, bfloat16 on a CPU that has it (env.precision_policy)
    jit_compile: bool        # XLA / jax.jit-compile the train step
    sample_grid_images: int  # images per class shown in sample grids
    steps_per_execution: int = 1  # training steps per compiled call
    # the whole run (data, training, evaluation) should fit this many minutes on the machine it
    # runs on: train() measures the speed and chooses the epochs (labkit.train.budget); None: off
    budget_minutes: float | None = None
    # per-architecture changes to the defaults above, e.g. {"vgg16": {"image_size": 64}}
    models: dict = dataclasses.field(default_factory=dict)
    # lab 06: one architecture trained with and without augmentation under the same budget
    augmentation_experiment: dict = dataclasses.field(default_factory=dict)
    # lab 08: a base network trained on source classes A, transferred to target classes B with
    # few images per class; "base": "imagenet" uses ImageNet weights instead where they download
    transfer_experiment: dict = dataclasses.field(default_factory=dict)
    # lab 05's degradation experiment (He et al. 2016, section 4.2): plain and residual CIFAR
    # networks of two depths, the same recipe and epochs; the deepest plain network's run gets
    # ``deep_run_minutes`` and its time budget chooses the epochs of all four. SGD at a constant
    # learning rate (a patience longer than the run): the comparison is of training, and an early
    # plateau of the validation accuracy would cut the rate of one run and not another
    degradation_experiment: dict = dataclasses.field(default_factory=dict)
    # lab 09: networks beyond the four labs, each trained with its ``for_model`` settings (the same
    # recipe as ResNet-18's), to join lab 07's comparison
    modern_models: tuple = ()
    # what the recipe's full length reached (measured, README): a run the budget shortened says so
    expected_val_accuracy: dict = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def for_model(self, model: str) -> dict:
        """Image size, batch size, epochs and recipe (optimizer, augmentation) for ``model``."""
        settings = {"image_size": self.image_size, "batch_size": self.batch_size, "epochs": self.epochs,
                    "optimizer": "sgd", "augmentation": "standard", "budget_minutes": self.budget_minutes}
        settings.update(self.models.get(model, {}))
        return settings


# the best validation accuracy of each cpu-profile lab run at its full length (README, Results:
# AlexNet and ResNet-18 2026-11-27; VGG-11 and SE-ResNet-18 2026-11-28; GoogLeNet 2026-11-24, with
# Keras' geometric layers). DenseNet-121's budget holds a third of its recipe: no full length measured
CPU_MEASURED = {"alexnet": 0.697, "vgg11": 0.494, "googlenet": 0.503, "resnet18": 0.794, "seresnet18": 0.809}
# the same for the gpu profile's 60 epochs at 224 px (README, Results on a GPU, 2026-12-04): AlexNet,
# VGG-11 and GoogLeNet on one H200; ResNet-18's AdamW recipe with the same settings on 2 CPU cores
GPU_MEASURED = {"alexnet": 0.744, "vgg11": 0.712, "googlenet": 0.515, "resnet18": 0.774}

PROFILES: dict[str, Profile] = {
    "gpu": Profile(
        name="gpu",
        description="the real lab on a GPU: 224-px inputs, the papers' schedules (ResNets: AdamW)",
        # the four labs' 60 epochs, measured on one H200 with JAX (README, Results on a GPU,
        # 2026-12-04): 42-120 s a run, 50.6-66.2% test top-1; about 3-9 minutes on a Colab T4
        # (estimated from the H200's figures, not measured)
        image_size=224, batch_size=64, epochs=60, steps_per_epoch=None,
        mixed_precision=True, jit_compile=True, sample_grid_images=6,
        # ResNet-18 at 224 px, 60 epochs: the papers' SGD schedule reached 60.6% test top-1 on the
        # H200, the cpu profile's AdamW + warm-up + cosine + weight averaging 78.8% (the same
        # settings run on 2 CPU cores, 2026-12-04; README, Results on a GPU). Lab 09's networks
        # take ResNet-18's recipe, so that lab 09 compares architectures
        models={m: {"optimizer": "adamw", "ema": True} for m in ("resnet18", "seresnet18", "densenet121")},
        augmentation_experiment={"model": "resnet18", "image_size": 160, "epochs": 60, "optimizer": "adamw"},
        # not yet measured on a GPU (the cpu profile's measured sizes scaled up)
        transfer_experiment={"model": "resnet50", "base": "imagenet", "image_size": 160, "source_classes": 9,
                             "base_epochs": 40, "base_settings": {"train_split": "trainval", "ema": True},
                             "epochs": 30, "images_per_class": [10, 40],
                             "layers": ["conv1", "conv2", "conv3", "conv4", "conv5"], "optimizer": "adamw",
                             "fine_tune_learning_rate": 1e-4},
        degradation_experiment={"image_size": 64, "depths": [20, 56], "deep_run_minutes": 4, "optimizer": "sgd",
                                "learning_rate": 0.05, "weight_decay": 1e-4, "plateau_patience": 40,
                                "augmentation": "light"},
        # lab 09's networks train with ResNet-18's gpu recipe (models above); not measured on a GPU
        modern_models=("densenet121", "seresnet18"),
        expected_val_accuracy=GPU_MEASURED,
        budget_minutes=15,  # a lab on a Colab T4 (the slowest GPU students get); a slower one runs fewer epochs
    ),
    "cpu": Profile(
        name="cpu",
        description="a reduced but real run on a 2-core CPU (about 15 minutes a lab)",
        image_size=128, batch_size=32, epochs=40, steps_per_epoch=None,
        mixed_precision=False, jit_compile=False, sample_grid_images=4,
        # measured on 2 cores (benchmarks/train_throughput.py): VGG-16 trains at 4.7 img/s at
        # 112 px but 19 img/s at 64 px; XLA slows CPU training, so it stays off here
        models={
            "alexnet": {"epochs": 60},
            "vgg11": {"image_size": 64, "epochs": 30},
            "vgg13": {"image_size": 64, "epochs": 20},
            "vgg16": {"image_size": 64, "epochs": 20},
            "vgg19": {"image_size": 64, "epochs": 15},
            "googlenet": {"epochs": 40},
            # AdamW + warm-up + cosine with weight averaging (README, Results); the papers' SGD
            # schedule (lr / 10 on plateau) needs more epochs than 15 minutes hold. bfloat16 where
            # the CPU has it: 1.28x faster steps (benchmark, best of 4), a margin on the budget
            "resnet18": {"epochs": 45, "optimizer": "adamw", "ema": True, "mixed_precision": True},
            # lab 09: the same recipe, so that the comparison is of the architectures
            "densenet121": {"epochs": 45, "optimizer": "adamw", "ema": True, "mixed_precision": True},
            "seresnet18": {"epochs": 45, "optimizer": "adamw", "ema": True, "mixed_precision": True},
        },
        modern_models=("densenet121", "seresnet18"),
        # measured without weight averaging (README, lab 06's experiment)
        augmentation_experiment={"model": "resnet18", "image_size": 64, "epochs": 25, "optimizer": "adamw",
                                 "ema": False},
        # measured (README, lab 08): transfer gains with the size of the source task, not the image
        # size. With 9 source classes (540 images) +6 points over scratch at 10 images per class
        # (+14 at 5), at 64 px as at 96; with 13 (780 images) and 4 target classes, +14 at 10.
        # 40 images per class (no gain with 9 source classes) is left to the gpu profile
        transfer_experiment={"model": "resnet18", "base": "source task", "image_size": 64, "source_classes": 13,
                             "base_epochs": 40, "base_settings": {"train_split": "trainval", "ema": True},
                             "epochs": 30, "images_per_class": [5, 10],
                             "layers": ["conv1", "conv2", "conv3", "conv4", "conv5"], "optimizer": "adamw",
                             "fine_tune_learning_rate": 1e-4},
        degradation_experiment={"image_size": 64, "depths": [20, 56], "deep_run_minutes": 4, "optimizer": "sgd",
                                "learning_rate": 0.05, "weight_decay": 1e-4, "plateau_patience": 40,
                                "augmentation": "light"},
        expected_val_accuracy=CPU_MEASURED,
        budget_minutes=15,
    ),
    "smoke": Profile(
        name="smoke",
        description="CI smoke test: smallest sizes, a few steps",
        image_size=32, batch_size=16, epochs=1, steps_per_epoch=2,
        mixed_precision=False, jit_compile=False, sample_grid_images=2,
        # lab 06's four runs and lab 08's five with the smallest ResNet (lab 05's CIFAR ResNet-8), as
        # the engine's tests; lab 08 copies and freezes up to its last stage, as up to ResNet-18's conv5
        augmentation_experiment={"model": "cifarresnet", "model_options": {"depth": 8}, "image_size": 32,
                                 "epochs": 1, "optimizer": "adamw"},
        transfer_experiment={"model": "cifarresnet", "model_options": {"depth": 8}, "base": "source task",
                             "image_size": 32, "source_classes": 9,
                             "base_epochs": 1, "base_settings": {"train_split": "trainval", "ema": True},
                             "epochs": 1, "images_per_class": [10],
                             "layers": ["stage3"], "optimizer": "adamw", "fine_tune_learning_rate": 1e-4},
        degradation_experiment={"image_size": 32, "depths": [8, 14], "deep_run_minutes": 1, "optimizer": "sgd",
                                "learning_rate": 0.05, "weight_decay": 1e-4, "plateau_patience": 40,
                                "augmentation": "light"},
        # one network: lab 09's loop and table run all the same; every builder's training step,
        # DenseNet's included, is tested on its own (tests/test_models.py)
        modern_models=("seresnet18",),
    ),
}


def available() -> list[str]:
    return list(PROFILES)


def gpu_count() -> int:
    """Number of GPUs the Keras backend can use."""
    from labkit.backend import gpu_count as count

    return count()


def detect() -> str:
    """The profile the hardware suggests: ``gpu`` with a GPU, otherwise ``cpu``."""
    return "gpu" if gpu_count() > 0 else "cpu"


def get_profile(name: str | Profile | None = None) -> Profile:
    """Return the active profile: ``name`` if given, else ``$LABKIT_PROFILE``, else detected."""
    if isinstance(name, Profile):
        return name
    source = "argument"
    if name is None:
        name = os.environ.get(ENV_VAR, "").strip() or None
        source = f"${ENV_VAR}"
    if name is None:
        return PROFILES[detect()]
    key = name.strip().lower()
    if key not in PROFILES:
        raise ValueError(
            f"Unknown labkit profile {name!r} (from {source}). Choose one of "
            f"{', '.join(PROFILES)}, e.g. `export {ENV_VAR}=cpu`, or unset {ENV_VAR} "
            "to detect it from the hardware."
        )
    return PROFILES[key]
