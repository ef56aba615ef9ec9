"""What a run leaves in its folder, and reading it back.

``results.json`` (the run record, written last and atomically: its presence means the run is
complete), ``history.csv``, ``model_summary.txt``, ``best.keras``, ``test_predictions.npz`` (the
test split's probabilities, single view and 10-crop, so that reading a run back does not
evaluate it again), ``per_class.csv``, ``confusion_matrix.csv`` and figures.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import zipfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from labkit import data as lkdata
from labkit import models as lkmodels

RESULTS_VERSION = 1
#: the test split's labels and probabilities: ``probabilities`` (single central view) and
#: ``probabilities_10crop`` (``labkit.evaluate.evaluate_ten_crop``)
PREDICTIONS = "test_predictions.npz"


@dataclasses.dataclass
class Run:
    """What a training run leaves: the model (best epoch), its history and its record."""

    out_dir: Path
    results: dict
    history: pd.DataFrame
    model: object = None
    evaluation: object = None
    data_dir: object = None
    _ten_crop: object = dataclasses.field(default=None, repr=False)
    _keep: bool = dataclasses.field(default=True, repr=False)   # predictions of this split may be kept

    @property
    def ten_crop(self):
        """AlexNet's 10-crop test of the best model (``labkit.evaluate.evaluate_ten_crop``), an
        ``Evaluation``: kept in the run folder when the run finished (``test_top1_10crop`` in its
        record); for a run from before that, computed once and kept."""
        if self._ten_crop is None:
            from labkit.evaluate import evaluate_ten_crop

            r, classes = self.results, self.results.get("config", {}).get("classes")
            names = lkdata.class_names(classes)
            saved = read_predictions(self.out_dir, r, names).get("probabilities_10crop") if self._keep else None
            if saved is None:
                saved = evaluate_ten_crop(self.model, names, "test", r["image_size"], batch_size=r["batch_size"],
                                          data_dir=self.data_dir, partition=r["partition"], classes=classes)
                if self._keep:
                    keep_predictions(self.out_dir, probabilities_10crop=saved)
            self._ten_crop = saved
        return self._ten_crop

    @property
    def network(self) -> dict:
        """Whose network the run trained: ``source`` "own" (``train(builder=...)``) or "labkit",
        the builder's name, and a ``note`` when a builder was given but labkit's was trained."""
        return {"source": "labkit", "builder": None, "fingerprint": None, "note": None,
                **(self.results.get("network") or {})}

    @property
    def steps_per_epoch(self) -> int:
        """Training steps in one of this run's epochs: to give a run on other data (``train_data``)
        the same length. Records from before it was recorded: computed from their config."""
        r, c = self.results, self.results.get("config", {})
        if r.get("steps_per_epoch") or c.get("steps_per_epoch"):
            return int(r.get("steps_per_epoch") or c["steps_per_epoch"])
        from labkit.train.inputs import epoch_steps

        rows = lkdata.select_task(lkdata.oxflower17_index(partition=r["partition"]), c.get("train_split", "train"),
                                  c.get("classes"), c.get("images_per_class"))
        return epoch_steps(len(rows), r["batch_size"], bool(r.get("jit_compile")))

    def summary(self) -> str:
        """What a lab prints after training: the network, the recipe, the time, the accuracies."""
        r, network = self.results, self.network
        if network["source"] == "own":
            whose = f"yours ({network['builder']})"
        else:
            whose = f"labkit's reference {r['model']}" + (f" -- NOT YOURS: {network['note']}" if network["note"] else "")
        speed = f" ({r['train_images_per_second']:.0f} images/s)" if r.get("train_images_per_second") else ""
        lines = [f"network : {whose}", f"recipe  : {_recipe_text(r)}",
                 f"training: {r['model']} at {r['image_size']} px, {r['profile']} profile, {r['epochs_run']} epochs "
                 f"in {r['training_seconds']:.0f} s{speed}"]
        if r.get("best_val_accuracy") is not None:
            lines.append(f"best validation accuracy {r['best_val_accuracy']:.1%} (epoch {r['best_epoch']})")
        lines += [f"test accuracy: top-1 {r['test_top1']:.1%}, top-5 {r['test_top5']:.1%}  ({r['split_name']})",
                  f"run record: {self.out_dir}"]
        return "\n".join(lines)


def _recipe_text(record: dict) -> str:
    """One line for the recipe: the optimizer and its settings, the loss, the callbacks."""
    recipe = record.get("recipe")
    if not recipe:  # a record from before recipes were recorded: its config says it
        c = record.get("config", {})
        return f"{c.get('optimizer')}, learning rate {c.get('learning_rate')}, weight averaging {c.get('ema')}"
    opt = recipe["optimizer"]["config"]
    rate = opt.get("learning_rate")
    if isinstance(rate, dict):  # a schedule
        inner = rate.get("config", {})
        peak = inner.get("warmup_target") or inner.get("initial_learning_rate")
        rate = f"{rate.get('class_name')} to {peak}"
    parts = [f"{recipe['optimizer']['class_name']} (learning rate {rate}"]
    parts += [f"{k.replace('_', ' ')} {opt[k]}" for k in ("momentum", "weight_decay") if opt.get(k)]
    parts[-1] += ")"
    loss = recipe["loss"]
    loss_name = loss.get("class_name") if isinstance(loss, dict) else loss
    smoothing = loss.get("config", {}).get("label_smoothing") if isinstance(loss, dict) else None
    text = ", ".join(parts) + f"; loss {loss_name}" + (f" (label smoothing {smoothing})" if smoothing else "")
    if opt.get("use_ema"):
        text += f"; weight averaging {opt.get('ema_momentum')}"
    return text + "".join(f"; {c['class_name']}" for c in recipe.get("callbacks", []))


def read_history(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame()
    # Keras' CSVLogger writes empty val_* columns when there is no validation (trainval): drop them
    history = pd.read_csv(path).dropna(axis=1, how="all")
    # an epoch written twice (crash between the log and the backup) keeps its last row
    return history.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)


def write_json_atomically(path: Path, payload: dict, default=None) -> None:
    """``payload`` as JSON to ``path``, through a temporary file (a crash never leaves half a file);
    ``default`` as in ``json.dumps`` (what to write for a value JSON has no type for)."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=default) + "\n")
    os.replace(tmp, path)


def summary_text(model) -> str:
    lines = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line), line_length=110)
    return "\n".join(lines) + "\n"


def save_figures(out: Path, history: pd.DataFrame, evaluation, title: str) -> None:
    """learning_curves.png and confusion_matrix.png in the run folder (closed, not shown)."""
    import matplotlib.pyplot as plt

    from labkit import plots

    for name, fig in (("learning_curves.png", plots.learning_curves(history, title=title)),
                      ("confusion_matrix.png", plots.confusion_matrix(evaluation.confusion_matrix(),
                                                                      evaluation.class_names, title=title))):
        fig.savefig(out / name, dpi=110, bbox_inches="tight")
        plt.close(fig)


def results(cfg, net, index, history, evaluation, wall, monitor, **extra) -> dict:
    """The run record: config, model size, data split, device and backend, speed, accuracy."""
    from labkit import backend
    from labkit.env import device_report

    val_col = monitor if monitor in history else "val_accuracy"
    # trainval: no validation, so no best epoch (null in the record)
    best_row = history.loc[history[val_col].idxmax()] if len(history) and val_col in history else None
    steady = (history["images_per_second"].iloc[1:] if len(history) > 1
              else history.get("images_per_second", pd.Series(dtype=float)))
    return {
        "results_version": RESULTS_VERSION,
        "model": cfg.model,
        "model_options": cfg.model_options,
        "params": lkmodels.count_parameters(net),
        "params_incl_bn_stats": lkmodels.count_all(net),
        "profile": cfg.profile,
        "image_size": cfg.image_size,
        "batch_size": cfg.batch_size,
        "split_name": index.attrs["split_name"],
        "partition": cfg.partition,
        "epochs_run": int(len(history)),
        "seed": cfg.seed,
        "device": device_report()["device"],
        "backend": backend.name(),
        "training_seconds": float(history["train_seconds"].sum()) if "train_seconds" in history else wall,
        "train_images_per_second": float(steady.mean()) if len(steady) else None,
        "best_epoch": int(best_row["epoch"]) + 1 if best_row is not None else None,
        "best_val_accuracy": float(best_row[val_col]) if best_row is not None else None,
        "test_top1": evaluation.top1,
        "test_top5": evaluation.top5,
        "test_images": int(len(evaluation.labels)),
        **extra,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": dataclasses.asdict(cfg),
    }


def read_predictions(out, record: dict, class_names) -> dict:
    """``{"probabilities": Evaluation, "probabilities_10crop": Evaluation}`` from the run folder's
    ``test_predictions.npz``, each only if it is well formed and gives the top-1 the record
    holds (``test_top1``, ``test_top1_10crop``); ``{}`` without the file. Anything else in the
    folder is not trusted here: ``labkit.train.integrity`` checks them against ``best.keras``."""
    from labkit.evaluate import Evaluation

    claimed = {"probabilities": record.get("test_top1"), "probabilities_10crop": record.get("test_top1_10crop")}
    try:
        with np.load(Path(out) / PREDICTIONS, allow_pickle=False) as saved:
            arrays = {key: saved[key] for key in ("labels", *claimed) if key in saved.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # missing, truncated or not an npz
        return {}
    labels = arrays.pop("labels", None)
    if labels is None or labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        return {}
    found = {}
    for key, probs in arrays.items():
        if probs.shape != (len(labels), len(class_names)) or not np.all(np.isfinite(probs)):
            continue
        evaluation = Evaluation(labels.astype(np.int64), probs.astype(np.float32), tuple(class_names))
        # a record from before 10-crop was recorded has nothing to compare with
        if claimed[key] is None and key == "probabilities_10crop" or (
                isinstance(claimed[key], (int, float)) and abs(evaluation.top1 - claimed[key]) < 1e-9):
            found[key] = evaluation
    return found


def keep_predictions(out, **evaluations) -> None:
    """Add ``probabilities`` and/or ``probabilities_10crop`` (``Evaluation`` objects of the test
    split) to the run folder's ``test_predictions.npz``, written atomically. A folder that cannot
    be written (read-only) is left as it is: the predictions are only a cache."""
    path = Path(out) / PREDICTIONS
    arrays = {}
    with contextlib.suppress(OSError, ValueError, EOFError, zipfile.BadZipFile):
        with np.load(path, allow_pickle=False) as saved:
            arrays = {key: saved[key] for key in saved.files}
    labels = next(iter(evaluations.values())).labels
    if "labels" in arrays and not np.array_equal(arrays["labels"], labels):
        arrays = {}   # another split order (another labkit version): start again
    arrays.update(labels=labels, **{key: e.probabilities for key, e in evaluations.items()})
    tmp = path.with_name(f".{PREDICTIONS}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def load_run(out_dir, data_dir=None) -> Run:
    """A finished run folder back as a ``Run``: its record, history, best model and test
    evaluation (from ``test_predictions.npz``; runs from before it are evaluated once, and kept)."""
    from labkit.evaluate import evaluate

    out = Path(out_dir)
    if not (out / "results.json").is_file():
        raise ValueError(f"{out} holds no finished run (no results.json); train it first.")
    record = json.loads((out / "results.json").read_text())
    model = keras.models.load_model(out / "best.keras")
    classes = record.get("config", {}).get("classes")
    names = lkdata.class_names(classes)
    # kept predictions are of the split the run was tested on: with another split here (the
    # official one added since), the model is evaluated on this one, and nothing is kept
    same_split = lkdata.load_splits(data_dir, record["partition"])[0] == record.get("split_name")
    saved = read_predictions(out, record, names) if same_split else {}
    evaluation = saved.get("probabilities")
    if evaluation is None:
        test = lkdata.oxflower17("test", record["image_size"], record["batch_size"], data_dir=data_dir,
                                 partition=record["partition"], classes=classes)
        evaluation = evaluate(model, test, names)
        if same_split:
            keep_predictions(out, probabilities=evaluation)
    return Run(out, record, read_history(out / "history.csv"), model, evaluation, data_dir,
               saved.get("probabilities_10crop"), same_split)


def write_run(out: Path, record: dict, inference, net, history, evaluation, ten_crop, title: str) -> None:
    """Everything but the backup; ``results.json`` last, so that it means 'complete'."""
    inference.save(out / "best.keras")
    keep_predictions(out, probabilities=evaluation, probabilities_10crop=ten_crop)
    (out / "model_summary.txt").write_text(summary_text(net))
    evaluation.per_class().to_csv(out / "per_class.csv", index=False)
    np.savetxt(out / "confusion_matrix.csv", evaluation.confusion_matrix(), fmt="%d", delimiter=",")
    save_figures(out, history, evaluation, title=title)
    write_json_atomically(out / "results.json", record)
