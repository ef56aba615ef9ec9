"""Reading run records (``results.json``) back: one table to compare runs, for labs and grading."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

COLUMNS = ["model", "start", "profile", "image_size", "epochs_run", "params", "train_images_per_second",
           "training_seconds", "best_val_accuracy", "test_top1", "test_top5", "split_name", "run"]


def default_outputs_dir() -> Path:
    """``$LABKIT_OUTPUTS_DIR``, else the checkout's ``outputs/`` (``labkit.places``)."""
    from labkit import places

    return places.outputs_dir()


def find_records(paths=None) -> list[Path]:
    """``results.json`` files in the given run folders, or anywhere below the given folders."""
    roots = [Path(p) for p in (paths or [default_outputs_dir()])]
    found = []
    for root in roots:
        if root.is_file() and root.name == "results.json":
            found.append(root)
        elif (root / "results.json").is_file():
            found.append(root / "results.json")
        elif root.is_dir():
            found.extend(sorted(root.rglob("results.json")))
    return found


def collect(paths=None) -> pd.DataFrame:
    """One row per run record; unreadable records are reported and skipped, never fatal."""
    rows = []
    for path in find_records(paths):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            print(f"[labkit.report] skipping {path}: {err}")
            continue
        record["run"] = str(path.parent)
        rows.append(record)
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    df = pd.DataFrame(rows)
    return df[[c for c in COLUMNS if c in df] + [c for c in df if c not in COLUMNS]]


#: the order profiles are listed in: real runs first
PROFILE_ORDER = ("gpu", "cpu", "smoke")


def short_split(name) -> str:
    """``official-1`` or ``labkit-1``: which split (datasplits.mat or labkit's own) and partition."""
    from labkit.data import OFFICIAL_SPLIT

    text = str(name or "")
    partition = text.rsplit("partition", 1)[1].strip() if "partition" in text else "?"
    return f"{'official' if text.startswith(OFFICIAL_SPLIT) else 'labkit'}-{partition}"


def select(table: pd.DataFrame, profiles=None, models=None) -> tuple[pd.DataFrame, int]:
    """The runs of ``profiles`` (default: all but ``smoke``, unless there are only smoke runs)
    and ``models`` (default: all), in order: profile (gpu, cpu, smoke), model, then when they
    finished. Also returns how many smoke runs the default left out."""
    if table.empty:
        return table, 0
    hidden = 0
    if profiles:
        table = table[table["profile"].isin(profiles)]
    elif (table["profile"] != "smoke").any():
        hidden = int((table["profile"] == "smoke").sum())
        table = table[table["profile"] != "smoke"]
    if models:
        table = table[table["model"].isin(models)]
    rank = {p: i for i, p in enumerate(PROFILE_ORDER)}
    order = table.assign(_p=table["profile"].map(lambda p: rank.get(p, len(rank))),
                         _f=table["finished"] if "finished" in table else "")
    return order.sort_values(["_p", "model", "_f"], kind="stable").drop(columns=["_p", "_f"]), hidden


#: the widest run folder name ``format_report`` prints whole; longer ones lose their middle
RUN_WIDTH = 44


def _middle(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    keep = (width - 1) // 2
    return text[:keep] + "…" + text[-(width - 1 - keep):]


def _short_start(row) -> str:
    """``scratch``, ``ImageNet`` or ``a run``, with what was copied and frozen: ``a run, to conv3, frozen``."""
    start = row.get("start")
    if not isinstance(start, dict):
        return "scratch"
    config = _config(row)
    source = "ImageNet" if start.get("weights") == "imagenet" else "a run"
    return source + (f", to {config['transfer_layers']}" if config.get("transfer_layers") else "") + (
        ", frozen" if config.get("freeze_until") else "")


def format_report(table: pd.DataFrame, root=None) -> pd.DataFrame:
    """The table for a terminal (about 130 columns): short split names, accuracies in percent,
    run folders relative to ``root`` (default: the outputs folder). A column every run shares
    (the split, a start from scratch) moves to ``attrs``."""
    root = Path(root) if root else default_outputs_dir()
    out = table[[c for c in COLUMNS if c in table]].copy()
    for c in ("best_val_accuracy", "test_top1", "test_top5"):
        out[c] = out[c].map(lambda v: f"{v:.1%}" if pd.notna(v) else "")
    out["params"] = out["params"].map(lambda v: f"{v / 1e6:.1f}M")
    if "start" in out:
        out["start"] = [_short_start(r) for _, r in table.iterrows()]
    out["train_images_per_second"] = out["train_images_per_second"].map(lambda v: f"{v:.0f}" if pd.notna(v) else "")
    out["training_seconds"] = out["training_seconds"].map(lambda v: f"{v:.0f}")
    out["split_name"] = out["split_name"].map(short_split)

    def relative(path):
        try:
            return str(Path(path).resolve().relative_to(root.resolve()))
        except ValueError:
            return str(path)

    out["run"] = out["run"].map(lambda p: _middle(relative(p), RUN_WIDTH))
    for column in ("split_name", "start"):   # said once, below the table, when every run shares it
        if column in out and out[column].nunique() == 1:
            out.attrs[column] = out[column].iloc[0]
            out = out.drop(columns=column)
    for column in ("model", "start", "run"):   # text reads left-aligned
        if column in out:
            width = int(out[column].str.len().max())
            out[column] = out[column].str.ljust(width)
    return out.rename(columns={"train_images_per_second": "img/s", "training_seconds": "train s",
                               "best_val_accuracy": "best val", "test_top1": "top-1", "test_top5": "top-5",
                               "image_size": "px", "epochs_run": "epochs", "split_name": "split"})


#: The four architecture labs' runs (02-05): model and builder options
LAB_RUNS = [("alexnet", {}), ("vgg11", {}), ("googlenet", {"aux_classifiers": True}), ("resnet18", {})]


def lab_runs(profile=None, runs=None, log=print) -> dict:
    """The four architecture labs' runs (``LAB_RUNS``) in ``profile``, as ``{model: run folder}``:
    for each, a finished run from scratch on all 17 classes at the profile's image size: the
    student's network (labs 02-05) over labkit's, the profile's seed over a repeat with another
    seed, then the latest. A lab not run yet is
    trained now, with labkit's reference network and the profile's recipe."""
    from labkit import train as lktrain
    from labkit.profiles import get_profile

    prof = get_profile(profile)
    records = collect(runs)
    found = {}
    for model, options in LAB_RUNS:
        cfg = lktrain.make_config(model, prof, model_options=options)
        mine = records[(records["model"] == model) & (records["profile"] == prof.name)
                       & (records["image_size"] == cfg.image_size)] if not records.empty else records
        mine = mine[[is_from_scratch(r) and _config(r).get("train_split", "train") == "train"
                     and (r.get("model_options") or {}) == options for _, r in mine.iterrows()]] if len(mine) else mine
        if len(mine):
            # the student's own network over labkit's, the lab's seed over a repeat's, then the latest
            preference = pd.DataFrame({"own": [_network(r) == "yours" for _, r in mine.iterrows()],
                                       "seed": [_config(r).get("seed", 0) == cfg.seed for _, r in mine.iterrows()],
                                       "finished": mine["finished"].to_numpy()}, index=mine.index)
            row = mine.loc[preference.sort_values(["own", "seed", "finished"]).index[-1]]
            found[model] = Path(row["run"])
            log(f"{model:10s} {_network(row):6s} network, test top-1 {row['test_top1']:.1%}   record: {found[model].name}")
        else:
            run = lktrain.train(model, profile=prof.name, model_options=options, verbose=0)
            found[model] = run.out_dir
            log(f"{model:10s} labkit network (trained now), test top-1 {run.results['test_top1']:.1%}   "
                f"record: {run.out_dir.name}")
    return found


def _config(row) -> dict:
    config = row.get("config")
    return config if isinstance(config, dict) else {}


def is_from_scratch(row) -> bool:
    """A record of the labs' comparison: all 17 classes, all training images and only those (no
    ``train_data`` of its own, such as lab 06's enlarged set), random start."""
    config = _config(row)
    start = row.get("start")
    return (not config.get("classes") and not config.get("images_per_class") and not config.get("train_data")
            and not isinstance(start, dict))


def _transferred_on_all_classes(row) -> bool:
    config = _config(row)
    return isinstance(row.get("start"), dict) and not config.get("classes") and not config.get("images_per_class")


def start_label(row) -> str:
    """``scratch``, ``ImageNet`` or ``run <folder>``, how far it was copied (``up to conv3``) and what
    was frozen (``frozen to conv4``)."""
    start = row.get("start")
    if not isinstance(start, dict):
        return "scratch"
    source = "ImageNet" if start.get("weights") == "imagenet" else f"run {Path(str(start.get('weights'))).name}"
    copied, frozen = _config(row).get("transfer_layers"), _config(row).get("freeze_until")
    return source + (f" up to {copied}" if copied else "") + (f", frozen to {frozen}" if frozen else "") + (
        ", BN frozen" if _config(row).get("freeze_batch_norm") else "")


def _recipe(row) -> str:
    """The run's recipe in a word or two: ``sgd``, ``adamw + ema``; ``custom`` for a recipe written
    in a notebook that differs from the profile's."""
    config = _config(row)
    if config.get("recipe"):
        return "custom"
    return f"{config.get('optimizer', '?')}" + (" + ema" if config.get("ema") else "")


def _network(row) -> str:
    """"yours" for a run of a network the student wrote (``train(builder=...)``), else "labkit"."""
    network = row.get("network")
    return "yours" if isinstance(network, dict) and network.get("source") == "own" else "labkit"


def _shape_summary(build) -> "pd.Series":
    """``inspect.summarize`` of the network ``build()`` returns, built from shapes alone
    (``labkit.models.shapes_only``: VGG-16 at 224 px counts 25 times faster)."""
    from labkit import inspect, models

    with models.shapes_only():
        return inspect.summarize(build())


def architecture_table(profile=None, runs=None) -> pd.DataFrame:
    """Every architecture the kit builds (LeNet-5 aside: it reads 32x32 digits), at the input
    size the profile trains it with: parameters, operations, activation memory; joined with the
    latest run record of the same model and profile trained from scratch on all 17 classes,
    preferring one trained at that size and leaving out runs fitted on train + val (training
    images/s, seconds per epoch, test accuracy; ``network``: "yours" when the run trained the
    student's own network, else "labkit"; ``recipe``: sgd, adamw + ema, custom). Models without a record show blanks. Below
    them, one row per run that started from trained weights (``start``: ImageNet or another
    run) on the same 17-class task, so that transfer stands beside training from scratch; runs
    on other tasks (lab 08's class subsets) are not comparable and stay out."""
    from labkit import models
    from labkit.profiles import get_profile

    prof = get_profile(profile)
    records = collect(runs)
    transferred = records.iloc[:0]
    if not records.empty:
        records = records[records["profile"] == prof.name].sort_values("finished")
        transferred = records[[_transferred_on_all_classes(r) for _, r in records.iterrows()]]
        records = records[[is_from_scratch(r) for _, r in records.iterrows()]]
    rows = []
    for name in models.available():
        if name == "lenet5" or name in models.EXPERIMENT_ONLY:  # LeNet reads 32x32 digits
            continue
        if name in models.BEYOND_THE_LABS and (records.empty or not (records["model"] == name).any()):
            continue  # lab 09's networks join the comparison once trained
        size = max(prof.for_model(name)["image_size"], models.min_input_size(name))
        totals = _shape_summary(lambda: models.build(name, num_classes=17, input_shape=(size, size, 3)))
        row = {"model": name, "start": "scratch", "input": size, "params": int(totals["params"]),
               "params_m": totals["params"] / 1e6, "gmacs": totals["macs"] / 1e9,
               "activation_mb": float(totals["activation_memory_mb"])}
        mine = records[records["model"] == name] if not records.empty else records
        if len(mine) and "config" in mine:  # runs fitted on train + val are not comparable
            mine = mine[[not isinstance(c, dict) or c.get("train_split", "train") == "train" for c in mine["config"]]]
        if len(mine) and (mine["image_size"] == size).any():
            mine = mine[mine["image_size"] == size]  # the lab's own run, not an experiment at another size
        if len(mine):
            r = mine.iloc[-1]
            row.update(network=_network(r), recipe=_recipe(r), train_images_per_second=r.get("train_images_per_second"),
                       seconds_per_epoch=r["training_seconds"] / max(r["epochs_run"], 1),
                       epochs_run=r["epochs_run"], test_top1=r["test_top1"],
                       test_top1_10crop=r.get("test_top1_10crop"), trained_at=r["image_size"])
        rows.append(row)
    for _, r in transferred.iterrows():
        size = int(r["image_size"])
        totals = _shape_summary(lambda: models.inference_model(
            models.build(r["model"], num_classes=17, input_shape=(size, size, 3), **(r.get("model_options") or {}))))
        rows.append({"model": r["model"], "start": start_label(r), "input": size, "params": int(totals["params"]),
                     "params_m": totals["params"] / 1e6, "gmacs": totals["macs"] / 1e9,
                     "activation_mb": float(totals["activation_memory_mb"]),
                     "train_images_per_second": r.get("train_images_per_second"),
                     "seconds_per_epoch": r["training_seconds"] / max(r["epochs_run"], 1), "epochs_run": r["epochs_run"],
                     "test_top1": r["test_top1"], "test_top1_10crop": r.get("test_top1_10crop"), "trained_at": size,
                     "network": _network(r), "recipe": _recipe(r)})
    return pd.DataFrame(rows)
