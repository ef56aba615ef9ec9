"""``python -m labkit assign``: student versions and autograders of the graded labs (otter assign)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import nbformat

from labkit.grading.masters import GradingError, graded_notebooks, leaks, questions
from labkit.grading.statics import STUDENT_VERSION

DIST_MARKER = ".labkit-assignment"


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
    list, the student version) for every graded lab. Works offline. A folder that ``assign`` did not make is never
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
            shutil.copy2(student, grader / STUDENT_VERSION)   # the cells grading takes as given (statics)
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
