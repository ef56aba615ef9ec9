"""``python -m labkit grade``: every submitted notebook, each in its own process and folder.

Each notebook runs offline with otter (``otter run``'s engine) in a fresh temporary folder, with
a time limit, its own copy of the data and a guard that refuses file changes outside that
folder (``labkit.sandbox``). The runs a lab trains come from the run folders the student handed
in, checked first (``labkit.train.integrity``), so nothing retrains unless asked
(``retrain=True``, ``--retrain``). A notebook that runs past the limit or tries to write outside
its folder gets zero for the whole lab; a cell that raises costs the questions it touches;
grading goes on with the next.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from labkit.grading.assign import assign
from labkit.grading.masters import GradingError
from labkit.grading.outcome import Outcome
from labkit.grading.outcome import rows as outcome_rows
from labkit.grading.submissions import find_submissions, run_folders
from labkit.startup import PRELOAD_VAR

DEFAULT_TIMEOUT = 3600          # seconds per notebook; the cpu profile trains for up to ~15 minutes
CSV_COLUMNS = ["student", "lab", "question", "score", "max_score", "message"]
#: not copied from a handed-in run: the per-epoch backup and the weights-only twin of best.keras
_NOT_COPIED = ("best.weights.h5",)
#: the thread counts TensorFlow, JAX (XLA) and OpenMP read at start-up
_THREAD_VARS = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def _copy_data(source: Path, dest: Path) -> None:
    """A private copy of the extracted images (and the small decoded caches) for one submission."""
    from labkit import data as lkdata

    images = lkdata.ensure_images(source).parent  # extract once, in the instructor's data folder
    shutil.copytree(images, dest / images.name)
    for extra in (source / "datasplits.mat",):
        if extra.is_file():
            shutil.copy2(extra, dest / extra.name)
    from labkit import places

    cache = places.cache_dir(source)
    if cache.is_dir():
        (dest / "cache").mkdir()
        for npy in cache.glob("oxflower17-*px-*.npy"):
            if npy.stat().st_size < 128 * 2**20:   # the smoke and cpu sizes (67 MB at 128 px); larger ones are re-made
                shutil.copy2(npy, dest / "cache" / npy.name)


def _kill_tree(pid: int) -> None:
    import psutil

    try:
        parent = psutil.Process(pid)
        procs = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(procs, timeout=10)


def _copy_run(run: Path, dest: Path) -> None:
    """A private copy of a handed-in run folder: what reading it back needs, not its backup."""
    dest.mkdir(parents=True)
    for item in run.iterdir():
        if item.is_file() and item.name not in _NOT_COPIED:
            shutil.copy2(item, dest / item.name)


def grade_notebook(notebook: Path, lab: str, autograder: Path, *, timeout: float = DEFAULT_TIMEOUT,
                   data_dir=None, profile: str | None = None, runs: dict | None = None,
                   threads: int | None = None) -> Outcome:
    """Grade one notebook in a fresh temporary folder and process. ``runs``: the run folders
    handed in with it (``{name: folder}``), checked and then read instead of training; ``None``
    lets the notebook train (``--retrain``). ``threads``: CPU threads its frameworks may use
    (several notebooks graded at once share the cores instead of fighting over them). A
    question missing from the outcome was not graded (the run failed before it)."""
    from labkit import data as lkdata

    notebook, autograder = Path(notebook).resolve(), Path(autograder).resolve()  # the worker runs elsewhere
    base = Path(tempfile.mkdtemp(prefix="labkit-grade-"))
    box = base / "box"            # the submission's folder: the only place it may write
    try:
        for sub in ("home", "tmp", "data"):
            (box / sub).mkdir(parents=True)
        _copy_data(lkdata.resolve_data_dir(data_dir), box / "data")
        shutil.copy2(notebook, box / f"{lab}.ipynb")
        for name, run in (runs or {}).items():
            _copy_run(Path(run), box / "handed-in" / name)
        env = {key: value for key, value in os.environ.items()
               if key in ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "CUDA_VISIBLE_DEVICES",
                          "TF_CPP_MIN_LOG_LEVEL", "OMP_NUM_THREADS")}
        home = box / "home"
        env.update(HOME=str(home), TMPDIR=str(box / "tmp"), MPLCONFIGDIR=str(home / ".matplotlib"),
                   KERAS_HOME=str(home / ".keras"), IPYTHONDIR=str(home / ".ipython"),
                   XDG_CACHE_HOME=str(home / ".cache"), XDG_CONFIG_HOME=str(home / ".config"),
                   JUPYTER_RUNTIME_DIR=str(home / ".jupyter-runtime"), MPLBACKEND="agg",
                   LABKIT_DATA_DIR=str(box / "data"), LABKIT_OUTPUTS_DIR=str(box / "outputs"),
                   LABKIT_OFFLINE="1", PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1", **{PRELOAD_VAR: "0"},
                   LABKIT_PROFILE=profile or os.environ.get("LABKIT_PROFILE", ""))
        if not env["LABKIT_PROFILE"]:
            env.pop("LABKIT_PROFILE")
        if threads:
            env.update({var: str(threads) for var in _THREAD_VARS})
        if runs is not None:
            from labkit.train.engine import NO_TRAINING_VAR

            env[NO_TRAINING_VAR] = "1"
        result, guard_log, worker_log = base / "result.json", base / "sandbox.log", base / "worker.log"
        command = [sys.executable, "-m", "labkit.grading.worker", str(box / f"{lab}.ipynb"),
                   str(autograder), str(result), str(guard_log), str(box)]
        started = time.monotonic()
        with open(worker_log, "wb") as out:
            proc = subprocess.Popen(command, cwd=box, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                proc.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                _kill_tree(proc.pid)
                timed_out = True
        seconds = time.monotonic() - started
        from labkit.sandbox import violations

        escapes = violations(guard_log)
        if escapes:
            return Outcome.failed(f"tried to {escapes[0]}", seconds)
        if timed_out:
            return Outcome.failed(f"stopped after the {timeout:.0f} s time limit "
                                  "(an endless loop, or too heavy a profile)", seconds)
        if not result.is_file():
            tail = worker_log.read_text(errors="replace").strip().splitlines()[-3:]
            return Outcome.failed("grading failed: " + " | ".join(tail), seconds)
        outcome = Outcome.from_dict(json.loads(result.read_text()))
        outcome.seconds = seconds
        return outcome
    finally:
        shutil.rmtree(base, ignore_errors=True)


def grade(submissions: str | os.PathLike, out: str | os.PathLike = "grades.csv", *, autograder=None,
          timeout: float = DEFAULT_TIMEOUT, jobs: int = 1, data_dir=None, profile: str | None = None,
          retrain: bool = False, log=print) -> pd.DataFrame:
    """Grade every notebook under ``submissions`` and write ``out``: one row per student, lab and
    question (score, max_score, message), a ``TOTAL`` row per student, and zero rows for labs a
    student did not hand in that others did. ``autograder`` defaults to ``dist/autograder`` and
    is generated (offline) when missing.

    The runs a lab trains are read from the run folders each student handed in (checked first:
    ``labkit.train.integrity``); a question about a run whose record is missing or does not
    check out scores zero, with the reason. ``retrain=True`` lets every notebook train instead."""
    submissions = Path(submissions)
    if not submissions.is_dir():
        raise GradingError(f"{submissions} is not a folder. Put each student's notebooks in "
                           "SUBMISSIONS_DIR/<student>/ (or SUBMISSIONS_DIR/<student>.ipynb).")
    if timeout <= 0 or jobs < 1:
        raise GradingError("--timeout must be positive and --jobs at least 1.")
    with contextlib.ExitStack() as stack:
        graders = (Path(autograder) if autograder else Path("dist") / "autograder").resolve()
        if not graders.is_dir():
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="labkit-assign-")))
            log(f"[labkit.grade] no {graders}/ yet: generating the autograders (offline) first")
            graders = assign(tmp / "dist", log=lambda *_: None) / "autograder"
        labs = sorted(p.name for p in graders.iterdir() if (p / "autograder.zip").is_file())
        if not labs:
            raise GradingError(f"{graders} holds no lab autograder; run `python -m labkit assign` first.")
        expected = {lab: json.loads((graders / lab / "questions.json").read_text()) for lab in labs}
        found, problems = find_submissions(submissions, labs)
        handed_in = {} if retrain else {student: run_folders(submissions / student) for student in
                                         {s for s, _, _ in found} if (submissions / student).is_dir()}
        for problem in problems:
            log(f"[labkit.grade] {problem}")
        if not found:
            raise GradingError(f"no lab notebook found in {submissions}.")

        def one(item):
            student, lab, path = item
            outcome = grade_notebook(path, lab, graders / lab / "autograder.zip", timeout=timeout,
                                     data_dir=data_dir, profile=profile,
                                     runs=None if retrain else handed_in.get(student, {}),
                                     threads=max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None)
            rows = outcome_rows(student, lab, expected[lab], outcome)
            score = sum(r["score"] for r in rows)
            log(f"[labkit.grade] {student} / {lab}: {score:g} of {sum(q['points'] for q in expected[lab]):g} "
                f"({outcome.seconds:.0f} s)")
            for problem in dict.fromkeys(outcome.problems()):
                log(f"[labkit.grade]     {student} / {lab}: {problem}")
            return rows

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            rows = [row for part in pool.map(one, found) for row in part]
    students = sorted({s for s, _, _ in found})
    notebooks = {(s, lab) for s, lab, _ in found}
    for student in students:
        for lab in sorted({lab for _, lab, _ in found}):
            if (student, lab) not in notebooks:
                rows += outcome_rows(student, lab, expected[lab], None, absent="not submitted")
    table = pd.DataFrame(rows, columns=CSV_COLUMNS)
    totals = table.groupby("student", as_index=False)[["score", "max_score"]].sum()
    totals = totals.assign(lab="ALL", question="TOTAL", message="")
    table = pd.concat([table.sort_values(["student", "lab"], kind="stable"), totals[CSV_COLUMNS]], ignore_index=True)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    table.to_csv(tmp, index=False)
    os.replace(tmp, out)
    log(f"[labkit.grade] {len(students)} students, {len(found)} notebooks -> {out}")
    return table
