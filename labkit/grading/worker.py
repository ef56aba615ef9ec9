"""The grading subprocess (``python -m labkit.grading.worker``), one per submitted notebook, in
its own folder (``labkit.grading.grade.grade_notebook`` prepares it):

1. puts two cells before the student's: the first checks each handed-in run folder
   (``labkit.train.integrity.check_run``), moves the genuine ones into the folder's
   ``outputs/``, where the notebook's ``train()`` calls find them instead of training, and
   writes what it found outside the folder; the second confines the kernel (``labkit.sandbox``);
2. lets otter execute and test the notebook;
3. writes an ``Outcome`` as JSON.

The checks run in the notebook's kernel, before any of the student's code and before the
sandbox, so that TensorFlow and the data are loaded once per notebook: this process loads no
framework (``LABKIT_PRELOAD=0``; the kernel it starts does not inherit that).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import nbformat

from labkit.grading.outcome import Outcome
from labkit.startup import PRELOAD_VAR

#: the problem reported for a handed-in run that was never checked (the kernel died first)
NOT_CHECKED = "not checked: the notebook stopped before its runs were checked"


def check_handed_in(handed_in: Path, outputs: Path, found=None) -> dict:
    """``{run name: problems}``; the genuine runs (no problems) are moved into ``outputs``.
    ``found``: a JSON file to write the result to (atomically)."""
    from labkit.train.integrity import check_run

    handed_in, outputs, records = Path(handed_in), Path(outputs), {}
    for run in sorted(p for p in handed_in.iterdir() if p.is_dir()) if handed_in.is_dir() else []:
        records[run.name] = check_run(run)
        if not records[run.name]:
            outputs.mkdir(parents=True, exist_ok=True)
            shutil.move(str(run), outputs / run.name)
    if found is not None:
        tmp = Path(f"{found}.tmp")
        tmp.write_text(json.dumps(records))
        os.replace(tmp, found)
    return records


def _read_records(found: Path, handed_in: Path) -> dict:
    if found.is_file():
        return json.loads(found.read_text())
    return {run.name: [NOT_CHECKED] for run in sorted(handed_in.iterdir()) if run.is_dir()} if handed_in.is_dir() else {}


def run(notebook: str, autograder: str, result: str, guard_log: str, root: str) -> None:
    os.environ.pop(PRELOAD_VAR, None)   # the kernel otter starts loads its framework as usual
    box, found = Path(root), Path(result).with_name("records.json")   # outside the box: the sandbox keeps it
    nb = nbformat.read(notebook, as_version=4)
    check = nbformat.v4.new_code_cell(
        "import labkit.grading.worker\n"
        f"labkit.grading.worker.check_handed_in({str(box / 'handed-in')!r}, {str(box / 'outputs')!r}, {str(found)!r})")
    guard = nbformat.v4.new_code_cell(f"import labkit.sandbox\nlabkit.sandbox.confine({root!r}, {guard_log!r})")
    nb.cells[:0] = [check, guard]
    nbformat.write(nb, notebook)

    from otter.api import grade_submission

    results = grade_submission(notebook, autograder, quiet=True)
    outcome = Outcome(records=_read_records(found, box / "handed-in"))
    for name, test_file in results.results.items():
        messages = [r.message.strip().splitlines()[-1] for r in test_file.test_case_results
                    if not r.passed and r.message and r.message.strip()]
        outcome.questions[name] = {"score": float(test_file.score), "possible": float(test_file.possible),
                                   "message": messages[0] if messages else ""}
    cells = (results.notebook or {"cells": []})["cells"]
    # the student's cells are numbered from the one after the guard, as in the notebook handed in
    first = next((i + 1 for i, cell in enumerate(cells) if "".join(cell.get("source", "")) == guard.source), 0)
    for index, cell in enumerate(cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                outcome.raised.append({"cell": index - first,   # negative: a cell grading put first
                                       "ename": output.get("ename", ""), "evalue": output.get("evalue", "")})
    Path(result).write_text(json.dumps(outcome.to_dict()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("notebook")
    parser.add_argument("autograder")
    parser.add_argument("result")
    parser.add_argument("guard_log")
    parser.add_argument("root")
    args = parser.parse_args()
    run(args.notebook, args.autograder, args.result, args.guard_log, args.root)
