"""Keeping the lab notebooks committable: execute them, then strip every output nbval won't check.

nbval (``--nbval-lax``) compares only cells marked ``# NBVAL_CHECK_OUTPUT``, and only when the
stored cell was executed (has an ``execution_count``); a stored output without one fails as
"Unrun reference cell has outputs". So a committed notebook keeps exactly the outputs and
execution counts of its checked cells and nothing else (no images, no progress bars).

Maintainers: ``python -m labkit refresh-notebooks`` (runs them in the ``smoke`` profile).
"""
from __future__ import annotations

import os
from pathlib import Path

import nbformat

CHECK_MARK = "NBVAL_CHECK_OUTPUT"

#: The one setup cell every lab starts with (tests check that each notebook has it verbatim).
SETUP_CELL = """\
# Setup: run this cell first. On Colab it installs labkit (once per runtime) and offers to keep
# your runs on Google Drive, so that a disconnect loses nothing; locally it changes nothing.
# Then it checks versions, reports the device and the profile (gpu / cpu / smoke, from
# $LABKIT_PROFILE or the hardware) and seeds every random generator.
import sys
if "google.colab" in sys.modules:
    import os, subprocess
    if not os.path.isdir("/content/labkit"):
        subprocess.run(["git", "clone", "-q", "--depth", "1", "{repo}", "/content/labkit"], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/labkit"], check=True)
    sys.path.insert(0, "/content/labkit")
    os.chdir("/content/labkit/notebooks")
    import labkit.colab
    labkit.colab.keep_on_drive()

import labkit.env
profile = labkit.env.setup(seed=42)"""


def colab_badge(notebook_name: str) -> str:
    from labkit import REPO_URL

    path = REPO_URL.removeprefix("https://github.com/")
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{path}/blob/main/notebooks/{notebook_name})")


def setup_cell(repo_url: str | None = None) -> str:
    """The setup cell, installing from ``repo_url`` (default: ``labkit.REPO_URL``; a student
    release installs from its own address, ``labkit.release``)."""
    from labkit import REPO_URL

    return SETUP_CELL.replace("{repo}", repo_url or REPO_URL)


def is_checked(cell) -> bool:
    return cell.cell_type == "code" and CHECK_MARK in cell.source


def strip(nb):
    """Drop outputs and execution counts of every code cell but the checked ones (in place)."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        if not is_checked(cell):
            cell.outputs = []
            cell.execution_count = None
        else:  # keep what nbval compares, nothing it would not (e.g. stderr noise)
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    nb.metadata.pop("widgets", None)
    return nb


def run(nb, folder: str | os.PathLike, profile: str = "smoke", timeout: float = 1800,
        allow_errors: bool = False) -> None:
    """Execute ``nb`` in place, in ``folder``, with ``LABKIT_PROFILE=profile`` for its kernel."""
    from nbclient import NotebookClient

    old = os.environ.get("LABKIT_PROFILE")
    os.environ["LABKIT_PROFILE"] = profile
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                       resources={"metadata": {"path": str(folder)}}).execute()
    finally:
        if old is None:
            os.environ.pop("LABKIT_PROFILE", None)
        else:
            os.environ["LABKIT_PROFILE"] = old


def execute(path: str | os.PathLike, profile: str = "smoke", timeout: int = 1800) -> None:
    """Run a notebook top to bottom in its own folder with ``LABKIT_PROFILE=profile``, strip, save."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    run(nb, path.parent, profile, timeout)
    nbformat.write(strip(nb), path)


class _NoGrader:
    """Stands in for otter's grader where it cannot run, so that the lab still runs."""

    def __init__(self, reason: str):
        self.reason = reason

    def check(self, question: str) -> None:
        print(f'grader.check("{question}") cannot run here: {self.reason}. On Colab, upload the '
              "tests/ folder that came with the lab next to this notebook and run the grader cell again.")


def grader(notebook: str):
    """otter-grader's ``grader`` for a lab (``grader.check("lrn")`` runs a question's public tests).
    Where otter cannot start (on Colab without the lab's ``tests/`` folder), a stand-in whose
    ``check`` says so instead of failing the notebook."""
    import otter

    try:
        return otter.Notebook(notebook)
    except Exception as err:  # otter refuses to start on Colab without a tests/ folder
        return _NoGrader(str(err))


def exercise_done(function, *args) -> bool:
    """Whether a student's exercise function already works on ``args`` (returns something, does
    not raise), so that a lab can use it further on and still run top to bottom without it."""
    try:
        result = function(*args)
    except Exception:
        return False
    return result is not None and result is not Ellipsis


def lab_notebooks(folder: str | os.PathLike | None = None) -> list[Path]:
    folder = Path(folder) if folder else Path(__file__).resolve().parent.parent / "notebooks"
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))
