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
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
        flags = next(line.split(":", 1)[1].split() for line in out.splitlines() if line.startswith("Flags"))
        wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
        return f"{name} ({os.cpu_count()} cores; {' '.join(wanted)})"
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lab", default="02_alexnet")
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--run", help="the finished run folder each student hands in "
                                      "(default: the one outputs/ holds for the lab's model and profile)")
    args = parser.parse_args()

    from labkit import grading, places, report

    masters = [p for p in grading.graded_notebooks() if p.stem == args.lab]
    if not masters:
        sys.exit(f"no graded lab {args.lab}")
    work = Path(tempfile.mkdtemp(prefix="grade-class-"))
    try:
        dist = grading.assign(work / "dist", notebooks=masters, log=lambda *_: None)
        solution = dist / "autograder" / args.lab / f"{args.lab}.ipynb"
        if args.run:
            run = Path(args.run)
        else:
            table = report.collect([places.outputs_dir()])
            model = {"02_alexnet": "alexnet", "03_vgg": "vgg11", "04_googlenet": "googlenet",
                     "05_resnet": "resnet18"}[args.lab]
            mine = table[(table["model"] == model) & (table["profile"] == args.profile)]
            if mine.empty:
                sys.exit(f"no finished {model} run of the {args.profile} profile in {places.outputs_dir()}; "
                         f"run the lab in that profile first, or pass --run")
            run = Path(mine.iloc[0]["run"])
        subs = work / "submissions"
        for i in range(args.students):
            student = subs / f"student{i:02d}"
            (student / "outputs").mkdir(parents=True)
            shutil.copy2(solution, student / f"{args.lab}.ipynb")
            for item in run.iterdir():   # what a student hands in: the run folder without its backup
                if item.is_file():
                    target = student / "outputs" / run.name / item.name
                    target.parent.mkdir(exist_ok=True)
                    os.link(item, target)   # same bytes for everyone; links keep the benchmark's disk small
        print(f"grading {args.students} submissions of {args.lab} ({run.name}) with {args.jobs} jobs, "
              f"profile {args.profile}, on {cpu_model()}", flush=True)
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
