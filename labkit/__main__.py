"""labkit's command line: ``python -m labkit COMMAND --help``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_info(args) -> int:
    from labkit import env

    env.setup(profile=args.profile)
    return 0


def _cmd_data(args) -> int:
    from labkit import data

    index = data.oxflower17_index(args.data_dir, partition=args.partition)
    print(f"{len(index)} images in {index.attrs['data_dir']}; split: {index.attrs['split_name']}")
    print(index.groupby("split").size().to_string())
    return 0


def _positive(kind):
    """An argparse type: a whole number (``int``) at least 1, or a positive ``float``."""
    what = "a whole number" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be at least 1, got {text}" if kind is int
                                             else f"must be positive, got {text}")
        return value

    return parse


_positive_int, _positive_float = _positive(int), _positive(float)


def _parse_option(text: str):
    """``KEY=VALUE`` with VALUE read as a bool, a number or a string: aux_classifiers=true."""
    if "=" not in text:
        raise ValueError(f"--model-option takes KEY=VALUE (e.g. aux_classifiers=true), got {text!r}")
    key, value = text.split("=", 1)
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return key.strip(), lowered == "true"
    for kind in (int, float):
        try:
            return key.strip(), kind(value)
        except ValueError:
            pass
    return key.strip(), value.strip()


def _cmd_train(args) -> int:
    from labkit import models, train
    from labkit.profiles import get_profile

    profile = get_profile(args.profile)
    # every setting given on the command line; the rest come from the profile (make_config)
    settings = {f.name: getattr(args, f.name) for f in train.config.cli_fields()
                if f.name not in ("model", "profile", "model_options") and getattr(args, f.name) is not None}
    options = dict(_parse_option(o) for o in args.model_options)
    # everything checkable is checked before any backend work starts or any data is fetched
    cfg = train.make_config(args.model, profile, model_options=options, **settings)
    budget = f", or fewer to fit {cfg.budget_minutes:g} minutes" if cfg.budget_minutes else ""
    print(f"training {cfg.model} ({models.min_input_size(cfg.model)} px minimum) at {cfg.image_size} px, "
          f"batch {cfg.batch_size}, {cfg.epochs} epoch(s){budget}, profile {cfg.profile}", flush=True)
    run = train.train(cfg.model, profile=profile, out_dir=args.out, data_dir=args.data_dir,
                      overwrite=args.overwrite, model_options=options, **settings)
    r = run.results
    chosen = (f"best validation {r['best_val_accuracy']:.1%} (epoch {r['best_epoch']})" if r["best_val_accuracy"]
              is not None else f"final weights after {r['epochs_run']} epochs on train + val")
    print(f"test top-1 {r['test_top1']:.1%}, top-5 {r['test_top5']:.1%}, 10-crop {r['test_top1_10crop']:.1%}; "
          f"{chosen}; {r['training_seconds']:.0f} s training; record in {run.out_dir}")
    if r.get("budget") and r["budget"]["epochs"] < r["budget"]["recipe_epochs"]:
        print(train.Budget(**r["budget"]).describe())
    return 0


def _add_config_arguments(parser) -> None:
    """One flag per ``TrainConfig`` field that the command line offers, with its help and choices
    (``labkit.train.config``): the config is the one place where a setting is declared."""
    from labkit.train.config import cli_fields

    for field in cli_fields():
        meta = field.metadata
        flag = meta["flag"] or "--" + field.name.replace("_", "-")
        kind = field.type if isinstance(field.type, str) else field.type.__name__
        if field.name == "model_options":
            parser.add_argument(flag, dest=field.name, action="append", default=[], metavar="KEY=VALUE",
                                help=meta["help"])
        elif kind.startswith("list"):
            parser.add_argument(flag, dest=field.name, nargs="+", default=None, help=meta["help"])
        elif kind.startswith("bool"):
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None,
                                help=meta["help"])
        else:
            if kind.startswith("int"):
                parse = _positive_int if field.name in _POSITIVE else int
            elif kind.startswith("float"):
                parse = _positive_float if field.name in _POSITIVE else float
            else:
                parse = str
            parser.add_argument(flag, dest=field.name, type=parse, choices=meta["choices"], default=None,
                                required=field.name == "model", help=meta["help"])


#: settings that must be positive (argparse refuses 0 and negative numbers before any work)
_POSITIVE = {"epochs", "image_size", "batch_size", "steps_per_execution", "plateau_patience", "learning_rate",
             "ema_momentum", "budget_minutes", "images_per_class"}


def _cmd_report(args) -> int:
    import pandas as pd

    from labkit import report

    table, hidden = report.select(report.collect(args.runs or None), profiles=args.profile, models=args.model)
    if table.empty:
        print("no run records (results.json) found" + (" for these filters" if args.profile or args.model else "")
              + "; train one with `python -m labkit train --model resnet18`")
        return 1
    root = args.runs[0] if len(args.runs) == 1 and Path(args.runs[0]).is_dir() else None
    shown = report.format_report(table, root=root)
    with pd.option_context("display.width", 250, "display.max_colwidth", 60):
        print(shown.to_string(index=False, justify="left"))
    shared = {"start": "every run from scratch", "split_name": "split"}
    notes = [f"{shared[k]}{'' if k == 'start' else ' ' + v}" for k, v in shown.attrs.items() if k in shared]
    if hidden:
        notes.append(f"{hidden} smoke-profile runs not shown (--profile smoke shows them)")
    if notes:
        print("; ".join(notes))
    return 0


def _cmd_assign(args) -> int:
    from labkit import grading

    grading.assign(args.out, notebooks=args.notebooks or None, run_tests=args.run_tests)
    return 0


def _cmd_release(args) -> int:
    from labkit import grading

    grading.release(args.out, config=args.config)
    return 0


def _cmd_grade(args) -> int:
    from labkit import grading
    from labkit.profiles import get_profile

    profile = get_profile(args.profile).name if args.profile else None  # refuse a bad name early
    grading.grade(args.submissions, args.out, autograder=args.autograder, timeout=args.timeout,
                  jobs=args.jobs, data_dir=args.data_dir, profile=profile, retrain=args.retrain,
                  require_sandbox=args.require_sandbox,
                  memory=int(args.memory * 2**30) if args.memory else None)
    return 0


def _cmd_render(args) -> int:
    from labkit import render

    summaries = render.render(args.profile, out=args.out, previews=args.previews, notebooks=args.notebooks or None)
    failed = [s["lab"] for s in summaries if s["errors"]]
    print(f"[labkit.render] {len(summaries)} labs in {Path(args.out) / 'index.html'}"
          + (f"; cells raised in {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _cmd_refresh_notebooks(args) -> int:
    from labkit import nbtools

    paths = args.notebooks or nbtools.lab_notebooks()
    for path in paths:
        print(f"executing {path} (profile {args.profile}) ...", flush=True)
        nbtools.execute(path, profile=args.profile)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m labkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="versions, device and the active profile")
    info.add_argument("--profile", help="gpu, cpu or smoke (default: $LABKIT_PROFILE or detected)")
    info.set_defaults(func=_cmd_info)

    dat = sub.add_parser("data", help="fetch, verify and extract OxFlower17; print the split sizes")
    dat.add_argument("--data-dir", help="data directory (default: $LABKIT_DATA_DIR or the repo's data/)")
    dat.add_argument("--partition", type=int, default=1, choices=(1, 2, 3))
    dat.set_defaults(func=_cmd_data)

    tr = sub.add_parser("train", help="train and evaluate one architecture on OxFlower17, write its run record")
    _add_config_arguments(tr)
    tr.add_argument("--out", help="run folder (default: outputs/<model>_<profile>_<size>px)")
    tr.add_argument("--data-dir", help="data directory (default: $LABKIT_DATA_DIR or the repo's data/)")
    tr.add_argument("--overwrite", action="store_true", help="replace a finished run in the same folder")
    tr.set_defaults(func=_cmd_train)

    rep = sub.add_parser("report", help="compare run records in a table")
    rep.add_argument("runs", nargs="*", help="run folders or folders of runs (default: the outputs folder)")
    rep.add_argument("--profile", nargs="+", choices=("gpu", "cpu", "smoke"),
                     help="only these profiles (default: all but smoke)")
    rep.add_argument("--model", nargs="+", help="only these models, e.g. --model alexnet resnet18")
    rep.set_defaults(func=_cmd_report)

    asg = sub.add_parser("assign", help="instructors: student versions and autograders of the graded labs (otter-grader)")
    asg.add_argument("--out", default="dist", help="output folder (default: dist/): student/ and autograder/")
    asg.add_argument("notebooks", nargs="*", help="master notebooks (default: the graded labs in notebooks/)")
    asg.add_argument("--run-tests", action="store_true",
                     help="also execute each solution notebook against its tests (slow: labs train)")
    asg.set_defaults(func=_cmd_assign)

    rel = sub.add_parser("release", help="instructors: the student release (notebooks without solutions, "
                                         "public tests, labkit) to publish at course.yml's release_url")
    rel.add_argument("--out", default="dist/release", help="output folder (default: dist/release/)")
    rel.add_argument("--config", help="course settings (default: course.yml in the checkout)")
    rel.set_defaults(func=_cmd_release)

    grd = sub.add_parser("grade", help="instructors: grade a folder of submitted notebooks offline, write a CSV")
    grd.add_argument("submissions", help="SUBMISSIONS_DIR/<student>/*.ipynb (with the student's run folders, "
                                         "e.g. SUBMISSIONS_DIR/<student>/outputs/) or SUBMISSIONS_DIR/<student>.ipynb")
    grd.add_argument("--out", default="grades.csv", help="CSV to write (default: grades.csv)")
    grd.add_argument("--autograder", help="folder of lab autograders (default: dist/autograder, made if missing)")
    grd.add_argument("--retrain", action="store_true",
                     help="let every notebook train again instead of reading the run folders handed in with it")
    grd.add_argument("--timeout", type=_positive_float, default=3600,
                     help="seconds each notebook may run before it is stopped and scored zero (default: 3600)")
    grd.add_argument("--jobs", type=_positive_int, default=1, help="notebooks graded at the same time (default: 1)")
    grd.add_argument("--profile", help="profile a notebook runs with when it hands in no run (default: "
                                       "$LABKIT_PROFILE or detected); otherwise the one its runs were trained in")
    grd.add_argument("--require-sandbox", action="store_true",
                     help="refuse to grade where the OS sandbox (bubblewrap) cannot start, instead of warning")
    grd.add_argument("--memory", type=_positive_float,
                     help="GiB of memory a notebook may hold before it is stopped and scored zero (default: 8, "
                          "or half the machine's)")
    grd.add_argument("--data-dir", help="data directory copied for each submission (default: $LABKIT_DATA_DIR or data/)")
    grd.set_defaults(func=_cmd_grade)

    ren = sub.add_parser("render", help="execute every lab and write HTML pages with their outputs, and an index")
    ren.add_argument("notebooks", nargs="*", help="default: every notebooks/NN_*.ipynb")
    ren.add_argument("--profile", default="cpu", help="profile the labs run in (default: cpu)")
    ren.add_argument("--out", default="site", help="folder for the HTML pages (default: site/)")
    ren.add_argument("--previews", help="also write the executed student notebooks here (e.g. previews/)")
    ren.set_defaults(func=_cmd_render)

    ref = sub.add_parser("refresh-notebooks",
                         help="maintainers: execute lab notebooks and keep only checked outputs")
    ref.add_argument("notebooks", nargs="*", help="default: every notebooks/NN_*.ipynb")
    ref.add_argument("--profile", default="smoke")
    ref.set_defaults(func=_cmd_refresh_notebooks)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from labkit.data import DataError
    from labkit.train import OutOfMemoryError

    expected = [DataError, OutOfMemoryError, ValueError]
    if args.command in ("assign", "release", "grade"):  # otter-grader and nbformat: instructors' tools only
        from labkit.grading import GradingError

        expected.append(GradingError)
    try:
        return args.func(args)
    except tuple(expected) as err:
        print(f"labkit: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
