"""Training a labkit model on OxFlower17: one call, paper defaults, safe to re-run.

    run = labkit.train.train("resnet18")            # the active profile decides the size
    run.results["test_top1"], run.history
    run = labkit.train.train("alexnet", builder=my_alexnet, recipe=my_recipe)   # your network, your recipe

The path, one module a step:

    labkit.train.config     TrainConfig: every setting, its default and its command-line flag
    labkit.train.inputs     the batches: training (uint8, mixed if asked), validation, test
    labkit.train.network    whose network: labkit's reference, or your own builder (checked)
    labkit.train.recipe     Recipe: optimizer, schedule, loss as Keras objects; the profile's
    labkit.train.model      the training and inference models, compiled with the recipe
    labkit.train.budget     epochs chosen from measured speed so that a run fits its time budget
    labkit.train.engine     train(): build, compile, fit, resume, evaluate
    labkit.train.records    the run folder: results.json, history, predictions, figures; load_run()
    labkit.train.integrity  whether a run folder is what its record says (grading without retraining)

Defaults follow the papers the slides quote (AlexNet section 5): SGD with momentum 0.9, weight
decay 5e-4, learning rate 0.01 divided by 10 when the validation accuracy stops improving.
``optimizer="adamw"`` is the modern alternative (AdamW, linear warm-up, cosine decay, label
smoothing 0.1). GoogLeNet's auxiliary classifiers add their losses with weight 0.3, in training
only.

Every run writes a folder (default ``outputs/<run-name>/``): ``results.json``,
``history.csv``, ``model_summary.txt``, ``best.keras`` (the best epoch by validation accuracy)
and figures. Re-running the same call after a crash or a Colab disconnect resumes from the
last backup (Keras ``BackupAndRestore``: every epoch, or less often where writing the model
costs more than an epoch, ``labkit.train.callbacks``); re-running a finished run returns its record
instead of training again (``overwrite=True`` trains afresh).
"""
from labkit.train.budget import Budget, choose_epochs  # noqa: F401
from labkit.train.callbacks import EpochTimer  # noqa: F401
from labkit.train.config import (  # noqa: F401
    AUGMENTATIONS, MIXINGS, OPTIMIZERS, TRAIN_SPLITS, TrainConfig, make_config, run_name, same_config,
)
from labkit.train.engine import OutOfMemoryError, TrainingRefused, train  # noqa: F401
from labkit.train.inputs import channel_statistics, datasets, mixing_layer, training_arrays  # noqa: F401
from labkit.train.model import build_training_model, compile_model, set_precision  # noqa: F401
from labkit.train.network import Network, choose_network  # noqa: F401
from labkit.train.recipe import Recipe, SmoothedSparseCrossentropy, make_optimizer, profile_recipe  # noqa: F401
from labkit.train.records import PREDICTIONS, RESULTS_VERSION, Run, load_run  # noqa: F401
