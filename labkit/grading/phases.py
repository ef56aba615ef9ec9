"""Driving grading's phases for each notebook (``labkit.grading.grade`` calls these).

    plan = make_plan(autograder / lab, work / "plans" / lab)                  # phase 0, once a lab
    pending = collect_notebook(notebook, lab, autograder / lab, plan, ...)    # phase 1, in the sandbox
    outcomes = score_notebooks([pending, ...], jobs=2)                        # phase 2, fresh processes

Phase 2 scores several notebooks' collections in one process (``python -m labkit.grading.score
--batch``): it loads Keras and otter once, not once a notebook. No submission code runs in it,
only data is read; a notebook whose scoring breaks that process is scored again alone.
"""
from __future__ import annotations

import contextlib
import dataclasses
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

from labkit.grading import box as sandbox_box
from labkit.grading.masters import GradingError
from labkit.grading.outcome import Outcome
from labkit.startup import PRELOAD_VAR

#: not copied from a handed-in run: the weights-only twin of best.keras
_NOT_COPIED = ("best.weights.h5",)
#: the thread counts TensorFlow, JAX (XLA) and OpenMP read at start-up
THREAD_VARS = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
SANDBOXED = "bubblewrap"


@dataclasses.dataclass
class Pending:
    """A notebook between the phases: its folder, and the outcome when phase 1 already decided it."""

    base: Path
    isolation: str
    seconds: float = 0.0
    outcome: Outcome | None = None


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
        env.update({var: str(threads) for var in THREAD_VARS})
    if no_training:
        from labkit.train.engine import NO_TRAINING_VAR

        env[NO_TRAINING_VAR] = "1"
    return env


def links(box: Path, parts) -> list[str]:
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


def collect_notebook(notebook: Path, lab: str, autograder: Path, plan: Path, *, timeout: float, data_dir=None,
                     profile: str | None = None, runs: dict | None = None, threads: int | None = None,
                     memory: int | None = None, require_sandbox: bool = False, secret=()) -> Pending:
    """Phase 1 for one notebook (``labkit.grading.grade.grade_notebook`` says what each argument is).
    Returns its ``Pending``: decided already (refused, out of time or memory, escaping), or with a
    job for phase 2 in its folder. Its copy of the data and of the runs is gone by then."""
    from labkit import data as lkdata
    from labkit.grading.statics import check_notebook
    from labkit.sandbox import violations

    notebook, autograder, plan = Path(notebook).resolve(), Path(autograder).resolve(), Path(plan).resolve()
    base = Path(tempfile.mkdtemp(prefix="labkit-grade-"))
    refused = check_notebook(notebook, autograder)   # before anything runs (phase 2 checks again)
    if refused:
        return Pending(base, "not run: refused by the source check", outcome=Outcome.failed(f"the notebook {refused[0]}"))
    box, guard = base / "box", base / "guard"   # the submission's folder: the only place it may write
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
    seconds = time.monotonic() - started
    escapes = violations(guard / "sandbox.log") or [f"link {link} to a file outside its folder"
                                                     for link in links(box, ("collected", "outputs"))][:1]
    if escapes or stopped:
        reason = (f"tried to {escapes[0]}" if escapes else
                  f"stopped after the {timeout:.0f} s time limit (an endless loop, or too heavy a profile)"
                  if stopped == "time" else "stopped: it held more memory than grading allows")
        return Pending(base, isolation, seconds, Outcome.failed(reason, seconds))
    handed_in = ({name: str(Path(run).resolve()) for name, run in runs.items()} if runs is not None else
                 {p.parent.name: str(p.parent) for p in (box / "outputs").glob("*/results.json")})
    if runs is not None:   # what phase 2 reads is the handed-in folders, not the box's copies
        shutil.rmtree(box / "outputs", ignore_errors=True)
    for part in ("data", "home", "tmp", "plan"):
        shutil.rmtree(box / part, ignore_errors=True)
    scored = base / "scored"
    shutil.copytree(plan, scored)   # the tests are unpacked here, outside the box
    job = {"autograder": str(autograder), "plan": str(scored), "collected": str(box / "collected"),
           "notebook": str(notebook), "runs": handed_in, "raised": str(box / "raised.json"),
           "data_dir": str(lkdata.resolve_data_dir(data_dir)), "result": str(base / "result.json")}
    (base / "job.json").write_text(json.dumps(job))
    return Pending(base, isolation, seconds)


def _score_batch(jobs: list[Path], threads: int | None, timeout: float, log: Path) -> None:
    env = {**os.environ, PRELOAD_VAR: "0", "LABKIT_OFFLINE": "1"}
    if threads:
        env.update({var: str(threads) for var in THREAD_VARS})
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "labkit.grading.score", "--batch", *map(str, jobs)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        sandbox_box.watch(proc, timeout, None)


def score_notebooks(pending: list[Pending], *, jobs: int = 1, threads: int | None = None,
                    timeout: float) -> list[Outcome]:
    """Phase 2 for each pending notebook, ``jobs`` processes at a time; the outcomes in order."""
    todo = [p for p in pending if p.outcome is None]
    chunks = [todo[i::jobs] for i in range(jobs) if todo[i::jobs]]
    with ThreadPoolExecutor(max_workers=max(1, len(chunks))) as pool:
        list(pool.map(lambda chunk: _score_batch([p.base / "job.json" for p in chunk], threads,
                                                 timeout * len(chunk), chunk[0].base / "score.log"), chunks))
    for p in todo:   # scored alone, in a process of its own, where its batch did not get to it
        if not (p.base / "result.json").is_file():
            _score_batch([p.base / "job.json"], threads, timeout, p.base / "score.log")
    outcomes = []
    for p in pending:
        if p.outcome is None:
            try:
                p.outcome = Outcome.from_dict(json.loads((p.base / "result.json").read_text()))
                p.outcome.seconds += p.seconds
            except (OSError, ValueError, TypeError):
                log = p.base / "score.log"
                tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.is_file() else []
                p.outcome = Outcome.failed("scoring failed: " + " | ".join(tail), p.seconds)
        p.outcome.isolation = p.isolation
        outcomes.append(p.outcome)
    return outcomes
