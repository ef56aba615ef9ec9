"""Instructor grading with otter-grader: student versions, hidden tests, offline batch grading.

The lab notebooks in ``notebooks/`` are otter-grader *master* notebooks: each graded exercise is
a question (``# BEGIN QUESTION`` ... ``# END QUESTION`` raw cells) with its solution between
``# BEGIN SOLUTION`` / ``# END SOLUTION`` and its tests, public ones (students run them with
``grader.check("lrn")``) and hidden ones (``hidden: true``, kept by the instructor).

    python -m labkit assign [--out dist]              # dist/student/, dist/autograder/
    python -m labkit grade SUBMISSIONS_DIR [--out grades.csv]

``grade`` runs every submitted notebook offline with otter (``otter run``'s engine), each in its
own process and temporary folder, with a time limit, its own copy of the data and a guard that
refuses file changes outside that folder (``labkit.sandbox``). A submission that raises loses
the questions its error touches, one that runs past the limit or tries to write outside its
folder gets zero for the whole lab, and grading goes on with the next.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pandas as pd
import yaml

DIST_MARKER = ".labkit-assignment"
DEFAULT_TIMEOUT = 3600          # seconds per notebook; the cpu profile trains for up to ~15 minutes
CSV_COLUMNS = ["student", "lab", "question", "score", "max_score", "message"]
_CONFIG_HEAD = "# ASSIGNMENT CONFIG"


class GradingError(RuntimeError):
    """Assignment or grading cannot go on; the message says what to do."""


# --------------------------------------------------------------------------- master notebooks
def _raw_head(cell) -> str:
    return cell.source.lstrip().split("\n", 1)[0].strip() if cell.cell_type == "raw" else ""


def is_master(path: str | os.PathLike) -> bool:
    """Whether a notebook is an otter master notebook (it has an ``# ASSIGNMENT CONFIG`` cell)."""
    nb = nbformat.read(path, as_version=4)
    return any(_raw_head(c) == _CONFIG_HEAD for c in nb.cells)


def graded_notebooks(folder: str | os.PathLike | None = None) -> list[Path]:
    """The lab notebooks with graded exercises (labs 01-07), in lab order."""
    from labkit.nbtools import lab_notebooks

    return [p for p in lab_notebooks(folder) if is_master(p)]


def questions(master: str | os.PathLike) -> list[dict]:
    """``[{"name", "points", "answered"}]`` of a master notebook's questions, in order;
    ``answered``: the student writes an answer (a solution cell), or only a run is checked."""
    nb = nbformat.read(master, as_version=4)
    found = []
    for cell in nb.cells:
        if _raw_head(cell) == "# BEGIN QUESTION":
            config = yaml.safe_load(cell.source.split("\n", 1)[1]) or {}
            found.append({"name": str(config["name"]), "points": float(config.get("points", 1)), "answered": False})
        elif found and (_raw_head(cell) == "# BEGIN SOLUTION" or "# SOLUTION" in cell.source
                        or "# BEGIN SOLUTION" in cell.source) and cell.cell_type != "markdown":
            found[-1]["answered"] = True
    return found


def _solution_lines(nb) -> set[str]:
    """Code lines that only the solutions contain: between ``# BEGIN SOLUTION`` and ``# END
    SOLUTION`` comments, or ending in ``# SOLUTION``."""
    lines, outside = set(), set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        inside = False
        for line in cell.source.splitlines():
            text = line.strip()
            if text.endswith("# BEGIN SOLUTION"):
                inside = True
            elif text.endswith("# END SOLUTION"):
                inside = False
            elif re.search(r"#\s?SOLUTION$", text):
                lines.add(re.sub(r"\s*#\s?SOLUTION$", "", text))
            elif text and not text.startswith("#"):
                (lines if inside else outside).add(text)
    return {line for line in lines - outside if len(line) > 8}


def _hidden_test_names(master_nb) -> set[str]:
    names = set()
    for cell in master_nb.cells:
        if cell.cell_type == "code" and "# BEGIN TEST CONFIG" in cell.source:
            config = cell.source.split('"""', 2)[1].replace("# BEGIN TEST CONFIG", "")
            if (yaml.safe_load(config) or {}).get("hidden"):
                names.update(re.findall(r"^def (\w+)\(", cell.source, flags=re.M))
    return names


def leaks(master: str | os.PathLike, student: str | os.PathLike) -> list[str]:
    """Solution lines or hidden tests of ``master`` that appear anywhere in ``student`` (its
    cells, outputs or metadata). An empty list means the student version is clean."""
    master_nb = nbformat.read(master, as_version=4)
    text = Path(student).read_text(encoding="utf-8")
    student_nb = json.loads(text)
    haystack = json.dumps(student_nb)  # the same escaping as the lines we look for
    found = [f"solution line {line!r}" for line in sorted(_solution_lines(master_nb))
             if json.dumps(line)[1:-1] in haystack]
    found += [f"hidden test {name}" for name in sorted(_hidden_test_names(master_nb)) if name in text]
    return found


# --------------------------------------------------------------------------- assign
def _otter_assign(master: Path, result: Path, run_tests: bool) -> None:
    from otter.assign import main as otter_assign

    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            otter_assign(str(master), str(result), no_pdfs=True, no_run_tests=not run_tests)
    except Exception as err:  # otter's own messages are terse: say which notebook
        raise GradingError(f"otter assign failed on {master.name}: {err}\n{out.getvalue()[-2000:]}") from err


def _student_badge(source: Path, dest: Path) -> None:
    """Copy a student notebook, replacing the Colab badge: it opens the repository's notebook,
    which is the instructor's version with the solutions."""
    nb = nbformat.read(source, as_version=4)
    for cell in nb.cells[:2]:
        if cell.cell_type == "markdown" and "colab-badge.svg" in cell.source:
            cell.source = re.sub(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)",
                                 "*On Colab: File → Upload notebook, then run the setup cell.*", cell.source)
    nbformat.write(nb, dest)


def assign(out: str | os.PathLike = "dist", notebooks=None, run_tests: bool = False, log=print) -> Path:
    """Write ``out/student/<lab>.ipynb`` (solutions and hidden tests removed; the public tests
    in its metadata and in ``out/student/tests/``) and
    ``out/autograder/<lab>/`` (solution notebook, all tests, otter's autograder zip, the question
    list) for every graded lab. Works offline. A folder that ``assign`` did not make is never
    overwritten; the new versions replace the old ones only once all labs have succeeded."""
    out = Path(out).resolve()
    masters = [Path(p).resolve() for p in notebooks] if notebooks else graded_notebooks()
    if not masters:
        raise GradingError("no lab notebook with an otter ASSIGNMENT CONFIG cell was found.")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / DIST_MARKER).is_file())):
        raise GradingError(f"{out} exists and was not made by `python -m labkit assign`; choose "
                           "another --out, or move it away first (nothing was written).")
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".assign-", dir=out))
    try:
        for master in masters:
            lab = master.stem
            _otter_assign(master, staging / "otter" / lab, run_tests)
            made = staging / "otter" / lab
            student = staging / "student" / f"{lab}.ipynb"
            student.parent.mkdir(parents=True, exist_ok=True)
            _student_badge(made / "student" / f"{lab}.ipynb", student)
            # the public tests also as files, for Colab, where otter reads tests only from tests/
            tests = staging / "student" / "tests"
            tests.mkdir(exist_ok=True)
            for name, source in nbformat.read(student, as_version=4).metadata["otter"]["tests"].items():
                (tests / f"{name}.py").write_text(source)
            problems = leaks(master, student)
            if problems:
                raise GradingError(f"the student version of {lab} would reveal: {'; '.join(problems)}. "
                                   "Wrap every solution in # BEGIN SOLUTION / # END SOLUTION cells.")
            grader = staging / "autograder" / lab
            grader.mkdir(parents=True)
            zips = sorted((made / "autograder").glob("*-autograder_*.zip"))
            shutil.copy2(zips[-1], grader / "autograder.zip")
            shutil.copy2(made / "autograder" / f"{lab}.ipynb", grader / f"{lab}.ipynb")
            if (made / "autograder" / "tests").is_dir():
                shutil.copytree(made / "autograder" / "tests", grader / "tests")
            (grader / "questions.json").write_text(json.dumps(questions(master), indent=1) + "\n")
            n = len(questions(master))
            log(f"[labkit.assign] {lab}: {n} question{'s' if n != 1 else ''}")
        (out / DIST_MARKER).write_text("made by python -m labkit assign\n")
        for part in ("student", "autograder"):  # swap in the complete new versions
            old = out / part
            if old.exists():
                old.rename(staging / f"old-{part}")
            (staging / part).rename(old)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"[labkit.assign] hand out {out / 'student'}/; keep {out / 'autograder'}/ for grading")
    return out


# --------------------------------------------------------------------------- submissions
def _notebook_lab(path: Path, labs: list[str]) -> str | None:
    """The lab a submitted notebook belongs to: otter's metadata, else its file name."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
        name = (meta.get("otter") or {}).get("assignment_name")
        if name in labs:
            return name
    except (OSError, ValueError, AttributeError):
        pass
    for lab in labs:
        if path.stem.startswith(lab) or path.stem.startswith(lab[:3]):
            return lab
    return None


def find_submissions(folder: str | os.PathLike, labs: list[str]) -> tuple[list[tuple[str, str, Path]], list[str]]:
    """``(student, lab, path)`` for ``folder/<student>/*.ipynb`` and ``folder/<student>.ipynb``,
    plus a message for every notebook that is not a lab."""
    folder = Path(folder)
    found, problems = [], []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            paths = [p for p in sorted(entry.rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.parts]
            student = entry.name
        elif entry.suffix == ".ipynb":
            paths, student = [entry], entry.stem
        else:
            continue
        mine: dict[str, list[Path]] = {}
        for path in paths:
            lab = _notebook_lab(path, labs)
            if lab is None:
                problems.append(f"{path}: not one of the graded labs ({', '.join(labs)}); skipped")
            else:
                mine.setdefault(lab, []).append(path)
        for lab, versions in mine.items():
            newest = max(versions, key=lambda p: p.stat().st_mtime)
            found.append((student, lab, newest))
            if len(versions) > 1:
                problems.append(f"{student} handed in {len(versions)} notebooks for {lab}; grading the newest, {newest.name}")
    return found, problems


# --------------------------------------------------------------------------- grading one notebook
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
            if npy.stat().st_size < 64 * 2**20:   # the smoke and cpu sizes; larger ones are re-made
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


def grade_notebook(notebook: Path, lab: str, autograder: Path, *, timeout: float = DEFAULT_TIMEOUT,
                   data_dir=None, profile: str | None = None) -> dict:
    """Grade one notebook in a fresh temporary folder and process. Returns ``{"questions":
    {name: {"score", "possible", "message"}}, "problems": [str]}``; a question missing from
    ``questions`` was not graded (the run failed before it)."""
    from labkit import data as lkdata

    notebook, autograder = Path(notebook).resolve(), Path(autograder).resolve()  # the worker runs elsewhere
    base = Path(tempfile.mkdtemp(prefix="labkit-grade-"))
    box = base / "box"            # the submission's folder: the only place it may write
    try:
        for sub in ("home", "tmp", "data"):
            (box / sub).mkdir(parents=True)
        _copy_data(lkdata.resolve_data_dir(data_dir), box / "data")
        shutil.copy2(notebook, box / f"{lab}.ipynb")
        env = {key: value for key, value in os.environ.items()
               if key in ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "CUDA_VISIBLE_DEVICES",
                          "TF_CPP_MIN_LOG_LEVEL", "OMP_NUM_THREADS")}
        home = box / "home"
        env.update(HOME=str(home), TMPDIR=str(box / "tmp"), MPLCONFIGDIR=str(home / ".matplotlib"),
                   KERAS_HOME=str(home / ".keras"), IPYTHONDIR=str(home / ".ipython"),
                   XDG_CACHE_HOME=str(home / ".cache"), XDG_CONFIG_HOME=str(home / ".config"),
                   JUPYTER_RUNTIME_DIR=str(home / ".jupyter-runtime"), MPLBACKEND="agg",
                   LABKIT_DATA_DIR=str(box / "data"), LABKIT_OUTPUTS_DIR=str(box / "outputs"), LABKIT_OFFLINE="1", PYTHONNOUSERSITE="1",
                   PYTHONDONTWRITEBYTECODE="1",
                   LABKIT_PROFILE=profile or os.environ.get("LABKIT_PROFILE", ""))
        if not env["LABKIT_PROFILE"]:
            env.pop("LABKIT_PROFILE")
        result, guard_log, worker_log = base / "result.json", base / "sandbox.log", base / "worker.log"
        command = [sys.executable, "-m", "labkit.grading", "--worker", str(box / f"{lab}.ipynb"),
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

        problems = [f"tried to {v}" for v in violations(guard_log)]
        if timed_out:
            return {"questions": {}, "problems": problems + [f"stopped after the {timeout:.0f} s time limit "
                                                              "(an endless loop, or too heavy a profile)"],
                    "seconds": seconds}
        if not result.is_file():
            tail = worker_log.read_text(errors="replace").strip().splitlines()[-3:]
            return {"questions": {}, "problems": problems + ["grading failed: " + " | ".join(tail)],
                    "seconds": seconds}
        graded = json.loads(result.read_text())
        graded["problems"] = problems + graded.get("problems", [])
        graded["seconds"] = seconds
        return graded
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _worker(notebook: str, autograder: str, result: str, guard_log: str, root: str) -> None:
    """In the grading subprocess: confine the kernel, let otter execute and test, save a summary."""
    nb = nbformat.read(notebook, as_version=4)
    guard = nbformat.v4.new_code_cell(f"import labkit.sandbox\nlabkit.sandbox.confine({root!r}, {guard_log!r})")
    nb.cells.insert(0, guard)
    nbformat.write(nb, notebook)

    from otter.api import grade_submission

    results = grade_submission(notebook, autograder, quiet=True)
    summary = {"questions": {}, "problems": []}
    for name, test_file in results.results.items():
        messages = [r.message.strip().splitlines()[-1] for r in test_file.test_case_results
                    if not r.passed and r.message and r.message.strip()]
        summary["questions"][name] = {"score": float(test_file.score), "possible": float(test_file.possible),
                                      "message": messages[0] if messages else ""}
    for cell in (results.notebook or {"cells": []})["cells"]:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                summary["problems"].append(f"a cell raised {output.get('ename')}: {output.get('evalue', '')[:200]}")
    Path(result).write_text(json.dumps(summary))


# --------------------------------------------------------------------------- grading a folder
def _rows(student: str, lab: str, expected: list[dict], graded: dict | None, absent: str = "") -> list[dict]:
    rows = []
    zero_all = graded is None or any(p.startswith(("tried to", "stopped after")) for p in graded["problems"])
    for q in expected:
        got = (graded or {}).get("questions", {}).get(q["name"])
        if graded is None:
            score, message = 0.0, absent
        elif zero_all:
            score, message = 0.0, next(p for p in graded["problems"] if p.startswith(("tried to", "stopped after")))
        elif got is None:
            score, message = 0.0, (graded["problems"] or ["not graded"])[0]
        else:
            score, message = got["score"], got["message"]
        rows.append(dict(student=student, lab=lab, question=q["name"], score=score,
                         max_score=q["points"], message=message))
    return rows


def grade(submissions: str | os.PathLike, out: str | os.PathLike = "grades.csv", *, autograder=None,
          timeout: float = DEFAULT_TIMEOUT, jobs: int = 1, data_dir=None, profile: str | None = None,
          log=print) -> pd.DataFrame:
    """Grade every notebook under ``submissions`` and write ``out``: one row per student, lab and
    question (score, max_score, message), a ``TOTAL`` row per student, and zero rows for labs a
    student did not hand in that others did. ``autograder`` defaults to ``dist/autograder`` and
    is generated (offline) when missing."""
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
        for problem in problems:
            log(f"[labkit.grade] {problem}")
        if not found:
            raise GradingError(f"no lab notebook found in {submissions}.")

        def one(item):
            student, lab, path = item
            graded = grade_notebook(path, lab, graders / lab / "autograder.zip", timeout=timeout,
                                    data_dir=data_dir, profile=profile)
            rows = _rows(student, lab, expected[lab], graded)
            score = sum(r["score"] for r in rows)
            log(f"[labkit.grade] {student} / {lab}: {score:g} of {sum(q['points'] for q in expected[lab]):g} "
                f"({graded['seconds']:.0f} s)")
            for problem in dict.fromkeys(graded["problems"]):
                log(f"[labkit.grade]     {student} / {lab}: {problem}")
            return rows

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            rows = [row for part in pool.map(one, found) for row in part]
    students = sorted({s for s, _, _ in found})
    handed_in = {(s, lab) for s, lab, _ in found}
    for student in students:
        for lab in sorted({lab for _, lab, _ in found}):
            if (student, lab) not in handed_in:
                rows += _rows(student, lab, expected[lab], None, absent="not submitted")
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


if __name__ == "__main__":  # the grading subprocess (see grade_notebook)
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=5, required=True)
    _worker(*parser.parse_args().worker)
