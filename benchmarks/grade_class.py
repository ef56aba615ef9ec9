"""Grading a class by run records: time to grade N submissions of one training lab.

    python benchmarks/grade_class.py --lab 02_alexnet --students 40 --profile cpu --jobs 2

Makes a class of N students, each handing in the lab's solution notebook and the run folder it
trained (the instructor's own finished run in outputs/, e.g. outputs/alexnet_cpu_128px from
`LABKIT_PROFILE=cpu jupyter execute notebooks/02_alexnet.ipynb`), grades it with
`labkit.grading.grade` (no retraining), and prints the total and per-notebook times, the scores,
and this machine's CPU. Target (issue 15): 40 submissions in 10 minutes or less on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def lab_runs(lab: str, profile: str) -> list[Path]:
    """The run folders a lab's solution trains in ``profile``, found in the outputs folder: the
    student's own network (``_own-``) of labs 02-05, and lab 05's degradation experiment."""
    from labkit import places, report

    model = report.LAB_RUNS[int(lab[:2]) - 2][0]   # labs 02-05 train report.LAB_RUNS in order
    table = report.collect([places.outputs_dir()])
    table = table[table["profile"] == profile]
    own = table[(table["model"] == model) & table["run"].str.contains("_own-")
                & table["config"].map(lambda c: c.get("seed", 0) == 0)]
    if own.empty:
        sys.exit(f"no finished run of {lab}'s own {model} in the {profile} profile in {places.outputs_dir()}; "
                 f"run the lab in that profile first (LABKIT_PROFILE={profile} jupyter execute ...), or pass --runs")
    runs = [Path(own.sort_values("finished").iloc[-1]["run"])]
    if lab == "05_resnet":
        cifar = table[table["model"] == "cifarresnet"]
        runs += [Path(r) for r in cifar["run"]]
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lab", default="02_alexnet")
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--runs", nargs="+", help="the finished run folders each student hands in (default: "
                                                  "those the lab's solution trained, from the outputs folder)")
    args = parser.parse_args()

    from labkit import grading
    from labkit.env import cpu_description

    masters = [p for p in grading.graded_notebooks() if p.stem == args.lab]
    if not masters:
        sys.exit(f"no graded lab {args.lab}")
    work = Path(tempfile.mkdtemp(prefix="grade-class-"))
    try:
        dist = grading.assign(work / "dist", notebooks=masters, log=lambda *_: None)
        solution = dist / "autograder" / args.lab / f"{args.lab}.ipynb"
        runs = [Path(r) for r in args.runs] if args.runs else lab_runs(args.lab, args.profile)
        subs = work / "submissions"
        for i in range(args.students):
            student = subs / f"student{i:02d}"
            (student / "outputs").mkdir(parents=True)
            shutil.copy2(solution, student / f"{args.lab}.ipynb")
            for run in runs:   # what a student hands in: the run folders, without backups
                (student / "outputs" / run.name).mkdir()
                for item in (i for i in run.iterdir() if i.is_file()):
                    os.link(item, student / "outputs" / run.name / item.name)   # links keep the disk small
        print(f"grading {args.students} submissions of {args.lab} ({', '.join(r.name for r in runs)}) with {args.jobs} jobs, "
              f"profile {args.profile}, on {cpu_description()}", flush=True)
        started = time.perf_counter()
        lines = []
        table = grading.grade(subs, work / "grades.csv", autograder=dist / "autograder", jobs=args.jobs,
                              profile=args.profile, log=lines.append)
        total = time.perf_counter() - started
        totals = table[table["question"] == "TOTAL"]
        print(f"total {total:.0f} s ({total / 60:.1f} min) for {args.students} notebooks: "
              f"{total * args.jobs / args.students:.0f} s a notebook on each of {args.jobs} workers")
        print("\n".join(lines[-3:]))
        print(f"scores: {totals['score'].value_counts().to_dict()} of {totals['max_score'].iloc[0]:g}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
