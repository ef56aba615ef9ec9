"""Grading's phase 1 (``python -m labkit.grading.worker``), run inside the sandbox
(``labkit.grading.box``), one per submitted notebook, in the submission's own folder:

1. puts a cell before the student's that confines the kernel (``labkit.sandbox``: the audit
   hook, the only guard where no OS sandbox could start, and a second one inside it), and one
   after them that collects every answer the plan asks for (``labkit.grading.collect``);
2. executes the notebook top to bottom with nbclient (a cell that raises does not stop it);
3. writes which cells raised, as JSON.

It sees the notebook, the plan (the arguments to call with; no test), the data and the runs
handed in; it writes only into its folder. Nothing it writes is trusted: phase 2
(``labkit.grading.score``) reads it as data.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import nbformat

from labkit.startup import PRELOAD_VAR

#: what a notebook may take per cell before the worker gives up on it (the whole has its own limit)
CELL_TIMEOUT = 3600


def run(notebook: str, plan: str, collected: str, raised: str, guard_log: str, root: str) -> None:
    from nbclient import NotebookClient

    os.environ.pop(PRELOAD_VAR, None)   # the kernel loads its framework as usual
    nb = nbformat.read(notebook, as_version=4)
    guard = nbformat.v4.new_code_cell(f"import labkit.sandbox\nlabkit.sandbox.confine({root!r}, {guard_log!r})")
    collect = nbformat.v4.new_code_cell(
        f"import labkit.grading.collect\nlabkit.grading.collect.collect(globals(), {plan!r}, {collected!r})")
    nb.cells = [guard, *nb.cells, collect]
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": root}})
    try:
        client.execute()
    finally:
        errors = []
        for index, cell in enumerate(nb.cells[1:-1]):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    errors.append({"cell": index, "ename": output.get("ename", ""),
                                   "evalue": output.get("evalue", "")[:500]})
        Path(raised).write_text(json.dumps(errors))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for name in ("notebook", "plan", "collected", "raised", "guard_log", "root"):
        parser.add_argument(name)
    args = parser.parse_args()
    run(args.notebook, args.plan, args.collected, args.raised, args.guard_log, args.root)
