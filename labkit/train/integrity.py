"""Whether a run folder is what its record says: for grading by run records, without retraining.

    problems = labkit.train.integrity.check_run("outputs/alexnet_cpu_128px")   # [] when genuine

Four checks, cheapest first (the network's, ``check_network``, after the record's):

1. the record matches its config: the folder name is the one the config gives
   (``run_name``), the record's own fields repeat the config's, and no more epochs ran than the
   config allows;
2. the history is consistent with the record: one row per epoch run, epochs 0, 1, ... in order,
   and the best validation accuracy and its epoch are the history's;
3. ``best.keras`` evaluated on the test split reproduces the recorded ``test_top1`` within
   ``tolerance`` (another CPU or GPU changes a few predictions, never many), and the kept test
   predictions (``test_predictions.npz``, which reading the run back shows) are its predictions
   and the record's top-1s. The 10-crop predictions are checked on a random sample of
   ``TEN_CROP_SAMPLE`` test images, not all of them (ten forward passes an image, and no grade
   depends on them): a made-up set disagrees with the model on many images, so a sample finds it.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

#: default tolerance on test top-1: 1.5 points, 5 of OxFlower17's 340 test images
TOLERANCE = 0.015
#: test images whose 10-crop predictions are recomputed to check the kept ones
TEN_CROP_SAMPLE = 10
_REPEATED = ("model", "model_options", "profile", "image_size", "batch_size", "partition", "seed")


def check_record(out: Path) -> list[str]:
    """Checks 1 and 2 (no model is loaded). An empty list means consistent."""
    from labkit.train.config import TrainConfig, run_name
    from labkit.train.records import read_history

    out = Path(out)
    try:
        record = json.loads((out / "results.json").read_text())
        stored = record["config"]
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        cfg = TrainConfig(**{k: v for k, v in stored.items() if k in names})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        return [f"results.json is missing or unreadable ({type(err).__name__})"]
    if not isinstance(cfg.model_options, dict):
        return ["results.json holds a malformed config"]
    problems = []
    try:
        expected_name = run_name(cfg)
    except (ValueError, KeyError, TypeError) as err:
        return [f"results.json's config names no valid run ({type(err).__name__})"]
    if out.name != expected_name:
        problems.append(f"the folder is named {out.name}, but its config gives {expected_name}")
    changed = [k for k in _REPEATED if record.get(k) != stored.get(k)]
    if changed:
        problems.append(f"the record's {', '.join(changed)} differ from its config")
    budget = record.get("budget") or {}
    allowed = max(cfg.epochs, int(budget.get("epochs") or 0))
    epochs_run = record.get("epochs_run")
    if not isinstance(epochs_run, int) or not 1 <= epochs_run <= allowed:
        problems.append(f"epochs_run {epochs_run!r} is not between 1 and the {allowed} its config allows")
        return problems
    history = read_history(out / "history.csv")
    if history.empty or "epoch" not in history:
        return problems + ["history.csv is missing or empty"]
    if list(history["epoch"]) != list(range(epochs_run)):
        problems.append(f"history.csv has {len(history)} epochs, the record {epochs_run}")
    val = "val_accuracy" if "val_accuracy" in history else None
    best = record.get("best_val_accuracy")
    if val and best is not None and len(history):
        row = history[val].idxmax()
        if not (isinstance(best, (int, float)) and math.isclose(history[val][row], best, abs_tol=1e-6)
                and record.get("best_epoch") == int(history["epoch"][row]) + 1):
            problems.append("the best validation accuracy or its epoch is not the history's")
    return problems


def check_run(out, data_dir=None, tolerance: float = TOLERANCE) -> list[str]:
    """All four checks; an empty list means the run folder is genuine. ``best.keras`` is loaded
    with Keras' ``safe_mode`` (no arbitrary code from a handed-in file)."""
    import keras

    from labkit import data as lkdata
    from labkit import models  # noqa: F401  (registers labkit's layers for loading)
    from labkit.evaluate import evaluate

    out = Path(out)
    problems = check_record(out)
    if problems:
        return problems
    record = json.loads((out / "results.json").read_text())
    try:
        model = keras.models.load_model(out / "best.keras", safe_mode=True)
    except Exception as err:  # a missing, truncated or foreign file: Keras raises several kinds
        return [f"best.keras cannot be loaded ({type(err).__name__})"]
    problems = _network_problems(record, model)
    if problems:
        return problems
    classes = record["config"].get("classes")
    test = lkdata.oxflower17("test", record["image_size"], record["batch_size"], data_dir=data_dir,
                             partition=record["partition"], classes=classes)
    names = lkdata.class_names(classes)
    evaluation = evaluate(model, test, names)
    claimed = record.get("test_top1")
    if not isinstance(claimed, (int, float)) or abs(evaluation.top1 - claimed) > tolerance:
        return [f"best.keras scores {evaluation.top1:.1%} on the test split, the record says {claimed!r}"]
    return _check_predictions(out, record, names, evaluation, tolerance, model, data_dir)


def _check_predictions(out: Path, record: dict, names, evaluation, tolerance: float, model, data_dir) -> list[str]:
    """The kept test predictions, if any, are ``evaluation``'s (all but ``tolerance`` of them),
    and the kept 10-crop ones the model's on a random sample of the test images."""
    import secrets
    import zipfile

    import numpy as np

    from labkit.evaluate import evaluate_ten_crop
    from labkit.train.records import PREDICTIONS, read_predictions

    path = out / PREDICTIONS
    if not path.exists():
        return []   # a run from before they were kept: reading it back evaluates it
    try:
        with np.load(path, allow_pickle=False) as stored:
            keys = set(stored.files) - {"labels"}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return [f"{PREDICTIONS} cannot be read"]
    saved = read_predictions(out, record, names)
    single = saved.get("probabilities")
    if (keys - set(saved) or single is None or not np.array_equal(single.labels, evaluation.labels)
            or np.mean(single.predictions != evaluation.predictions) > tolerance):
        return [f"{PREDICTIONS} is not best.keras's predictions and the record's results"]
    ten = saved.get("probabilities_10crop")
    if ten is not None:
        # a sample the run's author cannot know in advance
        sample = np.sort(np.random.default_rng(secrets.randbits(64)).choice(
            len(ten.labels), min(TEN_CROP_SAMPLE, len(ten.labels)), replace=False))
        check = evaluate_ten_crop(model, names, "test", record["image_size"], batch_size=record["batch_size"],
                                  data_dir=data_dir, partition=record["partition"],
                                  classes=record["config"].get("classes"), images=sample)
        # another device flips a few close calls: allow the tolerance's share, and at least one
        if np.sum(check.predictions != ten.predictions[sample]) > max(1, round(tolerance * len(sample))):
            return [f"{PREDICTIONS}'s 10-crop predictions are not best.keras's"]
    return []


def _network_problems(record: dict, saved) -> list[str]:
    from labkit.models.provenance import fingerprint
    from labkit.train.model import split_saved

    network = record.get("network") or {}
    try:
        net, _ = split_saved(saved, "best.keras")
    except ValueError as err:
        return [str(err)]
    if network.get("source") == "own" and fingerprint(net) != network.get("fingerprint"):
        return [f"the network in best.keras ({fingerprint(net)}) is not the one the record names "
                f"({network.get('fingerprint')})"]
    return []


def check_network(out) -> list[str]:
    """The network inside ``best.keras`` is the one the record names: its architecture's
    fingerprint (``labkit.models.provenance.fingerprint``) is the record's. A record copied from
    another run, with its fingerprint edited, fails here. ``[]`` when they agree (``check_run``
    checks this too)."""
    import keras

    import labkit.models  # noqa: F401  (registers labkit's layers for loading)

    out = Path(out)
    try:
        record = json.loads((out / "results.json").read_text())
        saved = keras.models.load_model(out / "best.keras", safe_mode=True, compile=False)
    except Exception as err:  # a missing, damaged or foreign file: Keras raises several kinds
        return [f"best.keras or results.json cannot be read ({type(err).__name__})"]
    return _network_problems(record, saved)
