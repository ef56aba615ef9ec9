"""What students handed in: ``SUBMISSIONS/<student>/<lab>.ipynb`` (or ``SUBMISSIONS/<student>.ipynb``),
with the run folders their labs trained (any folder holding a ``results.json``)."""
from __future__ import annotations

import json
import os
from pathlib import Path


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


def run_folders(folder: str | os.PathLike) -> dict[str, Path]:
    """The run folders a student handed in, anywhere below ``folder`` (``outputs/<run>/``, or
    the runs themselves), by name; of two with one name, the newer record."""
    found: dict[str, Path] = {}
    for record in sorted(Path(folder).rglob("results.json")):
        run = record.parent
        if any(part in ("backup", ".ipynb_checkpoints") for part in run.parts):
            continue
        if run.name not in found or record.stat().st_mtime > (found[run.name] / "results.json").stat().st_mtime:
            found[run.name] = run
    return found
