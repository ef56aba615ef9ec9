"""The grading subprocess (``python -m labkit.grading.worker``), one per submitted notebook, in
its own folder (``labkit.grading.grade.grade_notebook`` prepares it):

1. checks each handed-in run folder (``labkit.train.integrity.check_run``) and moves the
   genuine ones into the folder's ``outputs/``, where the notebook's ``train()`` calls find
   them instead of training;
2. confines the notebook's kernel (``labkit.sandbox``) and lets otter execute and test it;
3. writes an ``Outcome`` as JSON.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import nbformat

from labkit.grading.outcome import Outcome


def check_handed_in(handed_in: Path, outputs: Path) -> dict:
    """``{run name: problems}``; the genuine runs (no problems) are moved into ``outputs``."""
    from labkit.train.integrity import check_run

    records = {}
    for run in sorted(p for p in handed_in.iterdir() if p.is_dir()) if handed_in.is_dir() else []:
        records[run.name] = check_run(run)
        if not records[run.name]:
            outputs.mkdir(parents=True, exist_ok=True)
            shutil.move(str(run), outputs / run.name)
    return records


def run(notebook: str, autograder: str, result: str, guard_log: str, root: str) -> None:
    box = Path(root)
    records = check_handed_in(box / "handed-in", box / "outputs")
    nb = nbformat.read(notebook, as_version=4)
    guard = nbformat.v4.new_code_cell(f"import labkit.sandbox\nlabkit.sandbox.confine({root!r}, {guard_log!r})")
    nb.cells.insert(0, guard)
    nbformat.write(nb, notebook)

    from otter.api import grade_submission

    results = grade_submission(notebook, autograder, quiet=True)
    outcome = Outcome(records=records)
    for name, test_file in results.results.items():
        messages = [r.message.strip().splitlines()[-1] for r in test_file.test_case_results
                    if not r.passed and r.message and r.message.strip()]
        outcome.questions[name] = {"score": float(test_file.score), "possible": float(test_file.possible),
                                   "message": messages[0] if messages else ""}
    for index, cell in enumerate((results.notebook or {"cells": []})["cells"]):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                outcome.raised.append({"cell": index - 1,  # the guard cell is not the student's
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
