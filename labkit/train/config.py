"""What defines a training run: ``TrainConfig``, filled from the profile, then from arguments.

Each field that a user may set is declared once here, with its help text and choices; the
command line (``python -m labkit train``) is generated from these declarations (``cli_fields``).
"""
from __future__ import annotations

import dataclasses

from labkit import models as lkmodels
from labkit.profiles import Profile, get_profile

OPTIMIZERS = ("sgd", "adamw")
AUGMENTATIONS = ("none", "light", "standard", "strong")
# mixing two training images and their labels: mixup (Zhang et al. 2018) blends whole images,
# CutMix (Yun et al. 2019) pastes a patch of one into the other; labels mix in proportion
MIXINGS = ("none", "mixup", "cutmix")
# "train": fit on the training split, choose the epoch by validation accuracy (the labs);
# "trainval": once a recipe is chosen, fit it on training + validation images (1,020) and keep
# the final weights, the usual protocol for a final test figure (as in Nilsback & Zisserman 2006)
TRAIN_SPLITS = ("train", "trainval")


def option(default=None, help: str = "", choices=None, cli: bool = True, flag: str | None = None):
    """A ``TrainConfig`` field, with what the command line needs to offer it."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "cli": cli,
                                                        "flag": flag})


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a run; stored in ``results.json``."""

    model: str = option(None, "e.g. alexnet, vgg16, googlenet, resnet18 (labkit.models.available())")
    model_options: dict = option(None, "builder option, repeatable: aux_classifiers=true, two_gpu=true, "
                                       "version=2, batch_norm=true", flag="--model-option")
    profile: str = option(None, "gpu, cpu or smoke (default: $LABKIT_PROFILE or detected)")
    image_size: int = option(None, "square input side in pixels (default: the profile's)")
    batch_size: int = option(None, "default: the profile's")
    epochs: int = option(None, "default: the profile's, or as many as its time budget holds")
    steps_per_epoch: int | None = option(None, cli=False)
    optimizer: str = option("sgd", "sgd: the papers' SGD+momentum, lr 0.01 /10 on plateau; adamw: warm-up "
                                   "+ cosine (default: the profile's choice for the model)", OPTIMIZERS)
    learning_rate: float | None = option(None, "sgd 0.01, adamw 1e-3")
    momentum: float = option(0.9, "sgd's momentum")
    weight_decay: float | None = option(None, "sgd 5e-4, adamw 0.05")
    label_smoothing: float | None = option(None, "sgd 0, adamw 0.1")
    warmup_epochs: int = option(3, "adamw: epochs of linear warm-up")
    plateau_patience: int = option(5, "sgd: epochs without improvement before lr / 10")
    augmentation: str = option("standard", "default: the profile's choice for the model", AUGMENTATIONS)
    seed: int = option(0, "seeds the weights, the shuffling and the augmentation")
    partition: int = option(1, "OxFlower17's split partition", (1, 2, 3))
    mixed_precision: bool = option(False, "float16 on a GPU (bfloat16 on Ampere or newer, and on CPUs "
                                          "that compute it natively); default: the profile's")
    jit_compile: bool = option(False, "XLA / jax.jit-compile the training step (default: the profile's)")
    steps_per_execution: int = option(1, "training steps per compiled call (default: the profile's)")
    deterministic: bool = option(False, "bit-for-bit repeatable ops (slower)")
    ema: bool = option(False, "validate and keep an exponential moving average of the weights "
                              "(default: the profile's choice)")
    ema_momentum: float = option(0.99, "the average's momentum")
    mixing: str = option("none", "mix pairs of training images and their labels: mixup or CutMix "
                                 "(default: the profile's choice)", MIXINGS)
    train_split: str = option("train", "train: choose the epoch by validation accuracy; trainval: once the "
                                       "recipe is chosen, fit it on train + val (1,020 images) and keep the "
                                       "final weights (needs adamw)", TRAIN_SPLITS)
    classes: list | None = option(None, "train on these classes only (numbers 0-16 or names), labelled 0..k-1 "
                                        "in this order (default: all 17)")
    images_per_class: int | None = option(None, "at most this many training images of each class (default: all)")
    weights: str | None = option(None, "start from ImageNet weights (VGG-16/19, ResNet-50/101/152, DenseNet-121/"
                                       "169/201, EfficientNet-B0..B7): the "
                                       "backbone, with a new classifier", ("imagenet",))
    init: str | None = option(None, "start from a labkit run: its folder or its best.keras (the classifier "
                                    "too when the classes are the same)")
    transfer_layers: str | None = option(None, "with --init/--weights: copy the starting weights up to and "
                                               "including this layer (e.g. conv3); later layers start new "
                                               "(default: all but a classifier for other classes)")
    freeze_until: str | None = option(None, "freeze the network up to and including this layer (e.g. conv4, "
                                            "or fc7 for all but the classifier): its weights do not change "
                                            "and its batch norm runs in inference mode")
    freeze_batch_norm: bool = option(False, "run every batch norm in inference mode with fixed scale and offset "
                                            "(fine-tuning a pretrained network on small batches)")
    network: str | None = option(None, "whose network: None for labkit's builder, own-<fingerprint> for one "
                                       "passed to train(builder=...)", cli=False)
    recipe: str | None = option(None, "None for the recipe these fields describe, custom-<fingerprint> for one "
                                      "passed to train(recipe=...)", cli=False)
    train_data: str | None = option(None, "None for the split's images, own-<fingerprint> for images passed to "
                                          "train(train_data=...), such as a training set enlarged by hand",
                                    cli=False)
    budget_minutes: float | None = option(None, "choose the epochs so that the whole run fits this many "
                                                "minutes on this machine (default: the profile's; an "
                                                "explicit --epochs wins)")

    def __post_init__(self):
        self.model_options = dict(self.model_options or {})
        adam = self.optimizer == "adamw"
        if self.learning_rate is None:
            self.learning_rate = 1e-3 if adam else 0.01
        if self.weight_decay is None:
            self.weight_decay = 0.05 if adam else 5e-4
        if self.label_smoothing is None:
            self.label_smoothing = 0.1 if adam else 0.0
        if self.classes is not None:
            from labkit.data import resolve_classes

            self.classes = resolve_classes(self.classes)

    @property
    def num_classes(self) -> int:
        """17, or the number of ``classes`` the run trains on."""
        from labkit.data import NUM_CLASSES

        return len(self.classes) if self.classes else NUM_CLASSES

    @property
    def transfers(self) -> bool:
        """Whether the run starts from trained weights (``init`` or ``weights``)."""
        return bool(self.init or self.weights)


def field_names() -> set[str]:
    return {f.name for f in dataclasses.fields(TrainConfig)}


def cli_fields() -> list[dataclasses.Field]:
    """The fields the command line offers, in declaration order."""
    return [f for f in dataclasses.fields(TrainConfig) if f.metadata.get("cli")]


def normalize_model_name(model: str) -> str:
    return model.strip().lower().replace("-", "").replace("_", "")


def check(cfg: TrainConfig) -> None:
    """Refuse bad settings before any work, with messages that say what to do."""
    model = cfg.model
    if normalize_model_name(model) not in lkmodels.available():
        raise ValueError(f"Unknown model {model!r}. Choose one of: {', '.join(lkmodels.available())}.")
    minimum = lkmodels.min_input_size(model)
    if not isinstance(cfg.image_size, int) or cfg.image_size < minimum:
        raise ValueError(f"{model} needs an image size of at least {minimum} pixels, got {cfg.image_size!r}.")
    for name in ("epochs", "batch_size", "steps_per_execution"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name.replace('_', ' ')} must be a positive whole number, got {value!r}.")
    for name, choices in (("optimizer", OPTIMIZERS), ("augmentation", AUGMENTATIONS), ("mixing", MIXINGS),
                          ("train_split", TRAIN_SPLITS)):
        if getattr(cfg, name) not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}, got {getattr(cfg, name)!r}.")
    if cfg.images_per_class is not None and (not isinstance(cfg.images_per_class, int) or cfg.images_per_class < 1):
        raise ValueError(f"images per class must be a positive whole number, got {cfg.images_per_class!r}.")
    if cfg.init and cfg.weights:
        raise ValueError("start from a labkit run (init) or from ImageNet (weights), not both.")
    if cfg.weights is not None:
        if cfg.weights != "imagenet":
            raise ValueError(f"weights must be 'imagenet'; to start from a file use init. Got {cfg.weights!r}.")
        if not lkmodels.has_imagenet_weights(cfg.model, **cfg.model_options):
            raise ValueError(f"No ImageNet weights exist for {cfg.model} {cfg.model_options or ''}; Keras publishes "
                             "them for VGG-16/19, ResNet-50/101/152 (v1), DenseNet-121/169/201 and EfficientNet-B0..B7.")
    if cfg.init is not None:
        from pathlib import Path

        path = Path(cfg.init)
        if not (path.is_file() or (path / "best.keras").is_file()):
            raise ValueError(f"init must be a finished labkit run (a folder holding best.keras) or a .keras file; "
                             f"{path} is neither. Train the base run first.")
    if cfg.network and cfg.transfers:
        raise ValueError("starting weights (init, weights) are copied by labkit's layer names: train labkit's "
                         "network (no builder) to transfer them.")
    if cfg.transfer_layers and not cfg.transfers:
        raise ValueError("transfer_layers says how much of the starting weights to copy: give init or weights too.")
    if cfg.budget_minutes is not None and not cfg.budget_minutes > 0:
        raise ValueError(f"budget_minutes must be positive, got {cfg.budget_minutes!r}.")
    if cfg.train_data and cfg.images_per_class:
        raise ValueError("images_per_class chooses images from the training split; with train_data, choose "
                         "the images yourself.")
    if cfg.train_data and cfg.train_split != "train":
        raise ValueError("train_data replaces the training split's images; the validation split must stay "
                         "apart to choose the epoch: use train_split='train'.")
    if cfg.train_split == "trainval" and cfg.optimizer != "adamw" and not cfg.recipe:
        raise ValueError("training on train + val leaves no validation accuracy for SGD's schedule "
                         "(lr / 10 on plateau); use the fixed cosine schedule: optimizer 'adamw'.")


def make_config(model: str, profile: str | Profile | None = None, *, epochs=None, image_size=None,
                batch_size=None, steps_per_epoch="profile", model_options=None, optimizer=None,
                augmentation=None, **settings) -> TrainConfig:
    """Fill a ``TrainConfig`` from the profile (``Profile.for_model``), then explicit arguments.
    An explicit ``epochs`` turns the profile's time budget off."""
    prof = get_profile(profile)
    name = normalize_model_name(model)
    if name not in lkmodels.available():
        raise ValueError(f"Unknown model {model!r}. Choose one of: {', '.join(lkmodels.available())}.")
    unknown = set(settings) - field_names()
    if unknown:
        raise ValueError(f"unknown training setting(s) {', '.join(sorted(unknown))}; "
                         f"TrainConfig has {', '.join(sorted(field_names()))}.")
    defaults = prof.for_model(name)
    fixed = ("image_size", "batch_size", "epochs", "optimizer", "augmentation")
    recipe = {k: v for k, v in defaults.items() if k in field_names() and k not in fixed}
    base = {"mixed_precision": prof.mixed_precision, "jit_compile": prof.jit_compile,
            "steps_per_execution": prof.steps_per_execution}
    settings = {**base, **recipe, **{k: v for k, v in settings.items() if v is not None}}
    if epochs is not None:
        settings["budget_minutes"] = None  # the user chose the length
    cfg = TrainConfig(
        model=name,
        model_options=dict(model_options or {}),
        profile=prof.name,
        image_size=image_size or max(defaults["image_size"], lkmodels.min_input_size(name)),
        batch_size=batch_size or defaults["batch_size"],
        epochs=defaults["epochs"] if epochs is None else epochs,
        steps_per_epoch=prof.steps_per_epoch if steps_per_epoch == "profile" else steps_per_epoch,
        optimizer=optimizer or defaults["optimizer"], augmentation=augmentation or defaults["augmentation"],
        **settings)
    check(cfg)
    return cfg


# how a run is executed, not what it learns: a finished run is the same run whatever these were
EXECUTION_ONLY = ("steps_per_execution", "budget_minutes")


def same_config(stored: dict, cfg: TrainConfig) -> bool:
    """Whether a recorded config is ``cfg``; a field added to labkit after the record was written
    counts as its default, so records stay valid across versions. ``EXECUTION_ONLY`` fields
    are not compared (a budgeted run records the epochs it chose in its ``budget``)."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    return all(stored.get(key, defaults.get(key)) == value for key, value in dataclasses.asdict(cfg).items()
               if key not in EXECUTION_ONLY)


def run_name(cfg: TrainConfig) -> str:
    """``<model>[_options]_<profile>_<size>px[_<optimizer>][_aug-<strength>][_<mixing>][_trainval]...[_seed<n>]``: the
    bracketed parts appear only where they differ from the profile's defaults for the model."""
    defaults = get_profile(cfg.profile).for_model(cfg.model)
    name = cfg.model + "".join(f"_{k}-{v}" for k, v in sorted(cfg.model_options.items()))
    name += f"_{cfg.profile}_{cfg.image_size}px"
    if cfg.optimizer != defaults["optimizer"]:
        name += f"_{cfg.optimizer}"
    if cfg.augmentation != defaults["augmentation"]:
        name += f"_aug-{cfg.augmentation}"
    if cfg.mixing != defaults.get("mixing", "none"):
        name += f"_{cfg.mixing}"
    if cfg.train_split != defaults.get("train_split", "train"):
        name += f"_{cfg.train_split}"
    if cfg.classes:
        name += "_classes-" + "-".join(map(str, cfg.classes))
    if cfg.images_per_class:
        name += f"_{cfg.images_per_class}per-class"
    if cfg.transfers:
        from pathlib import Path

        source = cfg.weights or Path(cfg.init).name.removesuffix(".keras")
        source = Path(cfg.init).parent.name if source == "best" else source
        name += f"_from-{source}" + (f"-to-{cfg.transfer_layers}" if cfg.transfer_layers else "")
    if cfg.network:
        name += f"_{cfg.network}"
    if cfg.recipe:
        name += f"_recipe-{cfg.recipe.removeprefix('custom-')}"
    if cfg.train_data:
        name += f"_data-{cfg.train_data.removeprefix('own-')}"
    if cfg.freeze_until:
        name += f"_frozen-to-{cfg.freeze_until}"
    if cfg.freeze_batch_norm:
        name += "_bn-frozen"
    if cfg.seed != 0:
        name += f"_seed{cfg.seed}"
    return name
