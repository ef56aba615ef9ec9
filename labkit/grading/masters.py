"""The lab notebooks as otter-grader master notebooks: their questions, solutions and hidden tests,
and the check that a student version reveals none of them."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import yaml

_CONFIG_HEAD = "# ASSIGNMENT CONFIG"


class GradingError(RuntimeError):
    """Assignment, release or grading cannot go on; the message says what to do."""


def _raw_head(cell) -> str:
    return cell.source.lstrip().split("\n", 1)[0].strip() if cell.cell_type == "raw" else ""


def is_master(path: str | os.PathLike) -> bool:
    """Whether a notebook is an otter master notebook (it has an ``# ASSIGNMENT CONFIG`` cell)."""
    nb = nbformat.read(path, as_version=4)
    return any(_raw_head(c) == _CONFIG_HEAD for c in nb.cells)


def graded_notebooks(folder: str | os.PathLike | None = None) -> list[Path]:
    """The lab notebooks with graded exercises (labs 01-10), in lab order."""
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
